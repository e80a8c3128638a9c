/*
 * Preloaded after libasan and libubsan by scripts/sanitize.sh (built there).
 *
 * With both gcc runtimes in one process, libubsan's start-up call
 * __sanitizer_set_report_path(log_path) binds to libasan's definition, the
 * first in symbol lookup order: libasan's report file gets UBSAN_OPTIONS's
 * log_path, and libubsan's own stays stderr, so UBSan reports ignore
 * log_path. This calls libubsan's own definition with NBDJS_UBSAN_LOG_PATH.
 * Linked against libubsan, so that libubsan's initializer runs first.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find_ubsan(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  if (strstr(info->dlpi_name, "/libubsan.so")) {
    *(const char **)data = info->dlpi_name;
    return 1;
  }
  return 0;
}

__attribute__((constructor)) static void set_ubsan_report_path(void) {
  const char *path = getenv("NBDJS_UBSAN_LOG_PATH");
  const char *name = NULL;
  if (!path || !*path) return;
  dl_iterate_phdr(find_ubsan, &name);
  void *ubsan = name ? dlopen(name, RTLD_NOW | RTLD_NOLOAD) : NULL;
  void (*set)(const char *) = ubsan ? (void (*)(const char *))dlsym(ubsan, "__sanitizer_set_report_path") : NULL;
  if (!set) {
    fprintf(stderr, "ubsan-log-path: no libubsan __sanitizer_set_report_path (%s)\n", name ? dlerror() : "libubsan not loaded");
    abort();
  }
  set(path);
}
