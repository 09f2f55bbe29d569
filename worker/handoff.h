// The wire format of handing a live connection from a retiring worker to
// its successor (reload, upgrade): what travels with the socket.
//
// The retiring worker sends one kConnection message per connection over the
// SOCK_SEQPACKET channel (common/channel.h), with the socket attached and
// EncodeHandoff's fields as payload; the successor answers kAdopted or
// kRefused with EncodeAnswer(id). The two sides can be different binaries
// (an upgrade), so the payload is tagged fields (FieldWriter): a reader skips
// the tags it does not know, a field is added without a version bump, and
// a tag's number and meaning never change. kHandoffFormatVersion changes only
// if an existing field's meaning must; a reader takes any version >= 1 and
// reads the fields it knows. The EventLoop's side of the protocol (offers,
// answers, in-flight limit) is in handoff.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace redhub::worker {

// Tags of a kConnection payload. The numbers are the wire format.
enum class HandoffField : uint16_t {
  kVersion = 0,   // kHandoffFormatVersion; absent: not a connection message
  kId = 1,        // the connection id, kept by the successor (CLIENT LIST, answers)
  kProtocol = 2,  // 2 or 3 (HELLO)
  kName = 3,      // CLIENT SETNAME
  kAgeSeconds = 4,
  kCommands = 5,  // commands run so far (the close log line)
  // Reserved, not written: binaries before the named enum wrote 0 here (the
  // selected db) and none ever read it. Only db 0 exists (SELECT refuses any
  // other); a future SELECT takes this tag, and reads 0 from old binaries,
  // which is right for them.
  kSelectedDb = 6,
  kUnparsed = 7,      // the bytes of a partial request, up to kMaxHandoffBytes
  kSessionFlags = 8,  // Conn::session_flags (the command layer's MULTI bit)
  kUser = 9,          // Conn::user (AUTH); absent from older binaries: ""
};

constexpr uint64_t kHandoffFormatVersion = 1;
// Partial-request bytes a connection may carry: the channel's messages are
// bounded (channel.cc); a larger request still arriving moves once it has run.
constexpr size_t kMaxHandoffBytes = 64 * 1024;

// What a connection takes along to the successor.
struct HandoffState {
  uint64_t version = kHandoffFormatVersion;
  uint64_t id = 0;
  int protocol = 2;
  std::string name;
  uint64_t age_seconds = 0;
  uint64_t commands = 0;
  std::string_view unparsed;  // decoded: a view into the payload
  uint32_t session_flags = 0;
  std::string user;
};

std::string EncodeHandoff(const HandoffState& state);
// False if the payload is truncated or has no version; unknown tags are
// skipped; a protocol other than 3 reads as 2.
bool DecodeHandoff(std::string_view payload, HandoffState* state);

// kAdopted / kRefused payload: the connection id, 8 bytes little-endian.
std::string EncodeAnswer(uint64_t id);
uint64_t DecodeAnswer(std::string_view payload);

}  // namespace redhub::worker
