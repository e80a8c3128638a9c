{
  "variables": {
    # Fail early, naming the Debian package, when libnbd's headers are missing.
    "libnbd_check": "<!(pkg-config --exists libnbd && echo ok || (echo 'libnbd not found by pkg-config: install libnbd-dev (apt-get install libnbd-dev)' >&2; exit 1))"
  },
  "targets": [
    {
      "target_name": "nbd",
      "sources": [
        "native/addon.cc",
        "native/handle/nbd_handle.cc",
        "native/handle/nbd_handle_connect.cc",
        "native/handle/nbd_handle_errors.cc",
        "native/handle/command_pool.cc",
        "native/handle/nbd_handle_debug.cc",
        "native/drivers/driver_host.cc",
        "native/drivers/loop_driver.cc",
        "native/drivers/socket_watch.cc",
        "native/drivers/thread_driver.cc",
        "native/events/staged_events.cc",
        "native/events/event_delivery.cc",
        "native/generated/closures.cc",
        "native/events/event_window.cc",
        "native/util/arguments.cc",
        "native/util/last_error.cc",
        "native/util/inherit_stdio.cc",
        "native/generated/api_methods.cc",
        "native/generated/libnbd_loaded.cc"
      ],
      "include_dirs": ["native", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags libnbd)"],
      "libraries": ["<!@(pkg-config --libs libnbd)", "-ldl"],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ]
    }
  ]
}
