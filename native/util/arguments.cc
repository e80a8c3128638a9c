// Argument conversion between JS values and C (used by the generated glue).
#include "util/arguments.h"

namespace nbdjs {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;

// What a zero-length buffer points at: C callers always pass some address.
uint8_t* EmptyBuffer() {
  static uint8_t byte;
  return &byte;
}

}  // namespace

std::vector<std::string> ArgStrings(const Napi::Value& v) {
  std::vector<std::string> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char*> Argv(std::vector<std::string>& strings) {
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  return argv;
}

Napi::Value ThrowBufferType(Napi::Env env) {
  Napi::TypeError::New(env, "buf must be an ArrayBufferView").ThrowAsJavaScriptException();
  return env.Undefined();
}

uint64_t ArgUint64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
}

Napi::Value Int64ToJs(Napi::Env env, int64_t v) {
  double d = static_cast<double>(v);
  if (d <= kMaxSafeInteger && d >= -kMaxSafeInteger) return Napi::Number::New(env, d);
  return Napi::BigInt::New(env, v);
}

Napi::Value Uint64ToJs(Napi::Env env, uint64_t v) {
  if (v <= static_cast<uint64_t>(kMaxSafeInteger)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

bool ArgBuffer(const Napi::Value& v, uint8_t** data, size_t* length) {
  napi_env env = v.Env();
  bool is = false;
  void* ptr = nullptr;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t elements;
    napi_value ab;
    size_t offset;
    if (napi_get_typedarray_info(env, v, &type, &elements, &ptr, &ab, &offset) != napi_ok) return false;
    size_t size = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: size = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: size = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: size = 8; break;
      default: size = 1;
    }
    *data = static_cast<uint8_t*>(ptr);
    *length = elements * size;
    if (*data == nullptr) *data = EmptyBuffer();  // an empty view has no memory; libnbd wants non-NULL
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    napi_value ab;
    size_t offset;
    if (napi_get_dataview_info(env, v, length, &ptr, &ab, &offset) != napi_ok) return false;
    *data = ptr != nullptr ? static_cast<uint8_t*>(ptr) : EmptyBuffer();
    return true;
  }
  return false;
}

}  // namespace nbdjs
