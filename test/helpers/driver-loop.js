process.env.LIBNBD_DRIVER = 'loop';
