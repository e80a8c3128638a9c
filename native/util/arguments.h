// Argument conversion between JS values and C (used by the generated glue):
// numbers and BigInts, strings and argv arrays, buffers.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nbdjs {

uint64_t ArgUint64(const Napi::Value& v);
Napi::Value Int64ToJs(Napi::Env env, int64_t v);
Napi::Value Uint64ToJs(Napi::Env env, uint64_t v);
// Reads a Buffer/TypedArray/DataView; false if `v` is none of them.
bool ArgBuffer(const Napi::Value& v, uint8_t** data, size_t* length);
std::vector<std::string> ArgStrings(const Napi::Value& v);
// NULL-terminated argv pointing into `strings`.
std::vector<char*> Argv(std::vector<std::string>& strings);
Napi::Value ThrowBufferType(Napi::Env env);

}  // namespace nbdjs
