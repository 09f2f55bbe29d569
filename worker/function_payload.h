// FUNCTION DUMP's payload, as Redis 7.0 writes and reads it (so a dump
// from redis-server restores here and back): each library as the RDB
// opcode FUNCTION2 (245) and its code as an RDB string, then the RDB
// version (2 bytes, little endian) and the CRC64 of everything before
// (8 bytes, little endian). Codes are written plain; LZF-compressed and
// integer-encoded strings, which Redis writes, are read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace redhub::worker {

std::string DumpFunctionPayload(const std::vector<std::string>& codes);
// The libraries' codes, or false with Redis's error text.
bool ParseFunctionPayload(std::string_view payload, std::vector<std::string>* codes,
                          std::string* error);

}  // namespace redhub::worker
