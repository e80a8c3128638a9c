/* The plain C libnbd loop `npm run bench` measures the binding against.
 *
 * Keeps QD reads of BLOCK bytes in flight with nbd_aio_pread_structured
 * until TOTAL bytes are read, wrapping at the export's end; the chunk
 * callback counts bytes, the completion callback auto-retires. Prints one
 * JSON line: ops, bytes, chunks, seconds (connect excluded), peak RSS.
 *
 * Built by bench/run.ts:  cc -O2 c_loop.c $(pkg-config --cflags --libs libnbd)
 * usage: c_loop URI BLOCK QD TOTAL
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libnbd.h>

static uint64_t bytes, chunks, completed;

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

int
main (int argc, char **argv)
{
  if (argc != 5) {
    fprintf (stderr, "usage: %s URI BLOCK QD TOTAL\n", argv[0]);
    return EXIT_FAILURE;
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
  const uint64_t n = total / block;
  uint64_t issued = 0, offset = 0;

  struct timespec t0, t1;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  while (completed < n) {
    while (issued < n && nbd_aio_in_flight (h) < (int) qd) {
      if (offset + block > (uint64_t) size) offset = 0;
      if (nbd_aio_pread_structured (h, buf + (issued % qd) * block, block, offset,
                                    (nbd_chunk_callback) { .callback = chunk_cb },
                                    (nbd_completion_callback) { .callback = completion_cb },
                                    0) == -1)
        die ("nbd_aio_pread_structured");
      issued++;
      offset += block;
    }
    if (nbd_poll (h, -1) == -1) die ("nbd_poll");
  }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

  if (bytes != n * block) {
    fprintf (stderr, "c_loop: read %" PRIu64 " bytes, expected %" PRIu64 "\n", bytes, n * block);
    return EXIT_FAILURE;
  }
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("{\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"chunks\":%" PRIu64
          ",\"seconds\":%.9f,\"maxRssKiB\":%ld}\n",
          completed, bytes, chunks, seconds, ru.ru_maxrss);

  nbd_shutdown (h, 0);
  nbd_close (h);
  free (buf);
  return EXIT_SUCCESS;
}
