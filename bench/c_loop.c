/* The plain C libnbd loop `npm run bench` measures the binding against.
 *
 * Keeps QD reads of BLOCK bytes in flight with nbd_aio_pread_structured
 * until TOTAL bytes are read, wrapping at the export's end; the chunk
 * callback counts bytes, the completion callback auto-retires. Prints one
 * JSON line: ops, bytes, chunks, seconds (connect excluded), peak RSS.
 *
 * DRIVER is how libnbd is driven:
 *  - poll (the default): the loop calls nbd_poll, as libnbd's examples do;
 *  - thread: the binding's thread driver in C, its floor: an I/O thread
 *    polls libnbd's socket and runs the state machine (notify_read/write),
 *    and after a notify that completed reads it wakes the main thread
 *    through an eventfd; the main thread issues the next reads, waking the
 *    I/O thread when libnbd wants to write. Each completion costs the two
 *    thread wake-ups the binding's thread driver pays (I/O thread, then JS).
 *
 * WARMUP bytes are read first, neither timed nor counted (the bench reads
 * the same warm-up with every client: Node's compiles its loop meanwhile).
 *
 * Built by bench/run.ts:  cc -O2 -pthread c_loop.c $(pkg-config --cflags --libs libnbd)
 * usage: c_loop URI BLOCK QD TOTAL [poll|thread [WARMUP]]
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

static uint64_t bytes, chunks;
/* Counted on the I/O thread with DRIVER thread, read by the main thread. */
static _Atomic uint64_t completed;

static int
chunk_cb (void *user_data, const void *subbuf, size_t count, uint64_t offset,
          unsigned status, int *error)
{
  (void) user_data; (void) subbuf; (void) offset; (void) status; (void) error;
  chunks++;
  bytes += count;
  return 0;
}

static int
completion_cb (void *user_data, int *error)
{
  (void) user_data;
  if (*error) {
    fprintf (stderr, "c_loop: read failed: %s\n", strerror (*error));
    exit (EXIT_FAILURE);
  }
  completed++;
  return 1; /* auto-retire */
}

static void
die (const char *what)
{
  fprintf (stderr, "c_loop: %s: %s\n", what, nbd_get_error ());
  exit (EXIT_FAILURE);
}

/* DRIVER thread: the I/O thread's wake-up (direction changes, the end) and
 * the main thread's (reads completed). */
static int io_wake = -1, main_wake = -1;
static atomic_bool io_done;

static void
signal_fd (int fd)
{
  uint64_t one = 1;
  while (write (fd, &one, sizeof one) == -1 && errno == EINTR)
    ;
}

static void
drain_fd (int fd)
{
  uint64_t count;
  while (read (fd, &count, sizeof count) == -1 && errno == EINTR)
    ;
}

static void *
io_thread (void *arg)
{
  struct nbd_handle *h = arg;
  int fd = nbd_aio_get_fd (h);
  if (fd == -1) die ("nbd_aio_get_fd");
  while (!atomic_load (&io_done)) {
    unsigned dir = nbd_aio_get_direction (h);
    struct pollfd fds[2] = {
      { io_wake, POLLIN, 0 },
      { fd, (short) (((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                     ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)), 0 },
    };
    if (poll (fds, 2, -1) == -1) {
      if (errno == EINTR) continue;
      perror ("poll");
      exit (EXIT_FAILURE);
    }
    if (fds[0].revents & POLLIN) drain_fd (io_wake);
    uint64_t before = atomic_load (&completed);
    int r = 0;
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ))
      r = nbd_aio_notify_read (h);
    else if ((fds[1].revents & (POLLOUT | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_WRITE))
      r = nbd_aio_notify_write (h);
    if (r == -1) die ("nbd_aio_notify");
    if (atomic_load (&completed) != before) signal_fd (main_wake);
  }
  return NULL;
}

/* The reads of one phase (the warm-up, then the timed one): N more reads
 * of BLOCK bytes, QD in flight, from *OFFSET on, wrapping at SIZE. */
struct reads {
  struct nbd_handle *h;
  char *buf;
  uint64_t block, size, offset;
  unsigned qd;
  bool threaded;
};

static void
issue_read (struct reads *r, uint64_t slot)
{
  if (r->offset + r->block > r->size) r->offset = 0;
  if (nbd_aio_pread_structured (r->h, r->buf + slot * r->block, r->block, r->offset,
                                (nbd_chunk_callback) { .callback = chunk_cb },
                                (nbd_completion_callback) { .callback = completion_cb },
                                0) == -1)
    die ("nbd_aio_pread_structured");
  r->offset += r->block;
}

static void
run_reads (struct reads *r, uint64_t n)
{
  const uint64_t base = atomic_load (&completed), end = base + n;
  uint64_t issued = 0;
  if (!r->threaded) {
    while (completed < end) {
      while (issued < n && nbd_aio_in_flight (r->h) < (int) r->qd)
        issue_read (r, issued++ % r->qd);
      if (nbd_poll (r->h, -1) == -1) die ("nbd_poll");
    }
    return;
  }
  for (;;) {
    uint64_t done = atomic_load (&completed) - base;
    if (done >= n) break;
    if (issued < n && issued - done < r->qd) {
      /* The slot of a read completed: no read still in flight uses it. */
      issue_read (r, issued++ % r->qd);
      if (nbd_aio_get_direction (r->h) & LIBNBD_AIO_DIRECTION_WRITE) signal_fd (io_wake);
      continue;
    }
    drain_fd (main_wake);  /* sleeps until the I/O thread completes reads */
  }
}

int
main (int argc, char **argv)
{
  if (argc < 5 || argc > 7) {
    fprintf (stderr, "usage: %s URI BLOCK QD TOTAL [poll|thread [WARMUP]]\n", argv[0]);
    return EXIT_FAILURE;
  }
  bool threaded = argc >= 6 && strcmp (argv[5], "thread") == 0;
  if (argc >= 6 && !threaded && strcmp (argv[5], "poll") != 0) {
    fprintf (stderr, "c_loop: DRIVER must be poll or thread\n");
    return EXIT_FAILURE;
  }
  uint64_t warmup = argc == 7 ? strtoull (argv[6], NULL, 0) : 0;
  if (threaded) {
    io_wake = eventfd (0, EFD_CLOEXEC);
    main_wake = eventfd (0, EFD_CLOEXEC);
    if (io_wake == -1 || main_wake == -1) { perror ("eventfd"); return EXIT_FAILURE; }
  }
  const char *uri = argv[1];
  uint64_t block = strtoull (argv[2], NULL, 0);
  unsigned qd = strtoul (argv[3], NULL, 0);
  uint64_t total = strtoull (argv[4], NULL, 0);
  if (block == 0 || qd == 0 || total < block) {
    fprintf (stderr, "c_loop: BLOCK, QD and TOTAL must be positive, TOTAL >= BLOCK\n");
    return EXIT_FAILURE;
  }

  struct nbd_handle *h = nbd_create ();
  if (h == NULL) die ("nbd_create");
  if (nbd_connect_uri (h, uri) == -1) die ("nbd_connect_uri");
  int64_t size = nbd_get_size (h);
  if (size == -1) die ("nbd_get_size");
  if ((uint64_t) size < block) {
    fprintf (stderr, "c_loop: export smaller than one block\n");
    return EXIT_FAILURE;
  }

  char *buf = malloc (block * qd);
  if (buf == NULL) { perror ("malloc"); return EXIT_FAILURE; }
  struct reads r = { .h = h, .buf = buf, .block = block, .size = (uint64_t) size, .qd = qd, .threaded = threaded };
  pthread_t io;
  if (threaded && pthread_create (&io, NULL, io_thread, h) != 0) { perror ("pthread_create"); return EXIT_FAILURE; }

  /* The warm-up: read, neither timed nor counted, as every client of the
   * bench does (Node's compiles its loop meanwhile). */
  run_reads (&r, warmup / block);
  uint64_t warm_ops = atomic_load (&completed);
  bytes = chunks = 0;

  const uint64_t n = total / block;
  struct timespec t0, t1;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  run_reads (&r, n);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (threaded) {
    atomic_store (&io_done, true);
    signal_fd (io_wake);
    pthread_join (io, NULL);
  }

  if (bytes != n * block) {
    fprintf (stderr, "c_loop: read %" PRIu64 " bytes, expected %" PRIu64 "\n", bytes, n * block);
    return EXIT_FAILURE;
  }
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("{\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"chunks\":%" PRIu64
          ",\"seconds\":%.9f,\"maxRssKiB\":%ld}\n",
          atomic_load (&completed) - warm_ops, bytes, chunks, seconds, ru.ru_maxrss);

  nbd_shutdown (h, 0);
  nbd_close (h);
  free (buf);
  return EXIT_SUCCESS;
}
