// Redis's CRC64 (the "Jones" polynomial 0xad93d23594c935a9, reflected, no
// final xor): the checksum of RDB files and of DUMP / FUNCTION DUMP
// payloads. Crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
#pragma once

#include <cstdint>
#include <string_view>

namespace redhub {

// Continues `crc` over `bytes` (start with 0).
uint64_t Crc64(uint64_t crc, std::string_view bytes);

}  // namespace redhub
