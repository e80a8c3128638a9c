#include "drivers/socket_watch.h"

namespace nbdjs {

SocketWatch* SocketWatch::Open(napi_env env, uv_loop_t* loop, DriverHost* host, int fd, bool ref) {
  auto* w = new SocketWatch(host, fd);
  if (uv_poll_init(loop, &w->poll_, fd) != 0) {
    delete w;
    return nullptr;
  }
  w->poll_.data = w;
  napi_add_async_cleanup_hook(env, OnEnvCleanup, w, &w->hook_);
  if (!ref) uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll_));
  return w;
}

void SocketWatch::Close() {
  host_ = nullptr;
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
}

void SocketWatch::Watch(int events) {
  if (events == events_) return;
  events_ = events;
  if (events != 0)
    uv_poll_start(&poll_, events, OnPoll);
  else
    uv_poll_stop(&poll_);
}

void SocketWatch::SetRef(bool ref) {
  auto* h = reinterpret_cast<uv_handle_t*>(&poll_);
  if (ref)
    uv_ref(h);
  else
    uv_unref(h);
}

void SocketWatch::OnPoll(uv_poll_t* p, int status, int events) {
  auto* w = static_cast<SocketWatch*>(p->data);
  if (w->host_ == nullptr) return;
  if (status < 0) {
    // A socket error (POLLERR): libuv has stopped the poll and reports no
    // events. libnbd must read until it sees the error (every command in
    // flight then completes); the poll restarts on the next Rearm.
    w->events_ = 0;
    w->host_->OnLoopReady(true, true, true);
    return;
  }
  bool readable = (events & (UV_READABLE | UV_DISCONNECT)) != 0;
  bool writable = (events & UV_WRITABLE) != 0;
  w->host_->OnLoopReady(readable, writable, false);
}

void SocketWatch::OnClosed(uv_handle_t* h) {
  auto* w = static_cast<SocketWatch*>(h->data);
  if (w->hook_ != nullptr) napi_remove_async_cleanup_hook(w->hook_);
  delete w;
}

void SocketWatch::OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  auto* w = static_cast<SocketWatch*>(arg);
  if (w->host_ != nullptr) w->host_->Teardown();
}

}  // namespace nbdjs
