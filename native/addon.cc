// Module entry: the NbdHandle class, libnbd's constants and a few
// handle-independent helpers. No per-process state: everything lives in the
// objects of the env that loaded the module, so worker_threads work.
#include <libnbd.h>
#include <napi.h>

#include <cstring>

#include "events/event_queue.h"
#include "generated/libnbd_loaded.h"
#include "handle/nbd_handle.h"

namespace nbdjs {

namespace {

Napi::Value Strerror(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), strerror(info[0].As<Napi::Number>().Int32Value()));
}

void FreeAddonData(napi_env env, void* data, void*) {
  auto* addon = static_cast<AddonData*>(data);
  if (addon->async_context != nullptr) napi_async_destroy(env, addon->async_context);
  delete addon;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // libnbd's calls newer than 1.14: looked up in the loaded libnbd once per process.
  loaded::Resolve();
  auto* addon = new AddonData();
  napi_value resource_name = Napi::String::New(env, "NbdHandle");
  napi_async_init(env, nullptr, resource_name, &addon->async_context);
  napi_set_instance_data(env, addon, FreeAddonData, nullptr);

  exports.Set("Handle", NbdHandle::Init(env));
  Napi::Object constants = Napi::Object::New(env);
  ExportConstants(env, constants);
  exports.Set("constants", constants);
  exports.Set("strerror", Napi::Function::New(env, Strerror, "strerror"));
  ExportModuleFunctions(env, exports);
  exports.Set("eventStride", Napi::Number::New(env, kEventStride));
  exports.Set("readErrorMarker", Napi::Number::New(env, kReadErrorMarker));
  return exports;
}

}  // namespace nbdjs

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return nbdjs::Init(env, exports); }

NODE_API_MODULE(nbd, InitModule)
