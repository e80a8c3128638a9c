# libnbd's own Python binding on the same loop as bench/c_loop.c: QD reads of
# BLOCK bytes in flight with aio_pread_structured until TOTAL bytes are read,
# wrapping at the export's end; the chunk callback counts bytes, the
# completion callback auto-retires. WARMUP bytes are read first, neither
# timed nor counted, as by every client of the bench. Prints one JSON line
# (connect excluded).
#
# usage: /usr/bin/python3 py_loop.py URI BLOCK QD TOTAL [WARMUP]
import json
import resource
import sys
import time

import nbd


def main():
    uri = sys.argv[1]
    block, qd, total = (int(a) for a in sys.argv[2:5])
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    bufs = [nbd.Buffer(block) for _ in range(qd)]
    count = {"bytes": 0, "chunks": 0, "ops": 0}

    def chunk(subbuf, offset, status, error):
        count["chunks"] += 1
        count["bytes"] += len(subbuf)
        return 0

    def completion(error):
        if error.value:
            sys.exit("py_loop: read failed: errno %d" % error.value)
        count["ops"] += 1
        return 1  # auto-retire

    offset = 0

    def run_reads(n):
        nonlocal offset
        issued = 0
        end = count["ops"] + n
        while count["ops"] < end:
            while issued < n and h.aio_in_flight() < qd:
                if offset + block > size:
                    offset = 0
                h.aio_pread_structured(bufs[issued % qd], offset, chunk, completion=completion)
                issued += 1
                offset += block
            h.poll(-1)

    run_reads(warmup // block)
    count.update(bytes=0, chunks=0, ops=0)
    n = total // block
    t0 = time.monotonic()
    run_reads(n)
    seconds = time.monotonic() - t0

    if count["bytes"] != n * block:
        sys.exit("py_loop: read %d bytes, expected %d" % (count["bytes"], n * block))
    print(json.dumps({**count, "seconds": seconds,
                      "maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    h.shutdown()


main()
