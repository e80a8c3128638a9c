process.env.LIBNBD_DRIVER = 'thread';
