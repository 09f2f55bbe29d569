// The upgrade state's encoding, formats 2 and 1 (upgrade_state.h).
#include "upgrade_state.h"

#include <charconv>
#include <climits>

#include "channel.h"

namespace redhub::master {
namespace {

constexpr std::string_view kFormat2 = "2:";
constexpr std::string_view kFormat1 = "1;";

uint16_t Tag(StateField f) { return static_cast<uint16_t>(f); }
uint16_t Tag(SlotField f) { return static_cast<uint16_t>(f); }
uint16_t Tag(WorkerField f) { return static_cast<uint16_t>(f); }

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

bool Unhex(std::string_view text, std::string* out) {
  if (text.size() % 2 != 0) return false;
  auto digit = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = digit(text[i]), lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

// A PutU64 value no larger than max.
bool Number(std::string_view bytes, uint64_t max, uint64_t* out) {
  if (bytes.size() != 8) return false;
  *out = FieldReader::U64(bytes);
  return *out <= max;
}

// Calls on(tag, bytes) for each field of data; "" or the first error.
template <typename On>
std::string ForEachField(std::string_view data, const char* what, On on) {
  FieldReader r(data);
  uint16_t tag;
  std::string_view bytes;
  while (r.Next(&tag, &bytes)) {
    if (std::string e = on(tag, bytes); !e.empty()) return e;
  }
  return r.ok() ? "" : std::string("truncated ") + what;
}

std::string Bad(const char* field) { return std::string("bad value of ") + field; }

std::string DecodeSlot(std::string_view data, UpgradeState::Slot* slot) {
  bool have_index = false;
  std::string e = ForEachField(data, "slot", [&](uint16_t tag, std::string_view v) {
    uint64_t n = 0;
    if (tag == Tag(SlotField::kIndex)) {
      if (!Number(v, INT_MAX, &n)) return Bad("slot index");
      slot->index = static_cast<int>(n);
      have_index = true;
    } else if (tag == Tag(SlotField::kFd)) {
      if (!Number(v, INT_MAX, &n)) return Bad("slot descriptor");
      slot->fds.push_back(static_cast<int>(n));
    } else if (tag == Tag(SlotField::kTlsFd)) {
      if (!Number(v, INT_MAX, &n)) return Bad("slot TLS descriptor");
      slot->tls_fds.push_back(static_cast<int>(n));
    }
    return std::string();
  });
  if (e.empty() && !have_index) e = "a slot without its index";
  return e;
}

std::string DecodeWorker(std::string_view data, UpgradeState::Worker* w) {
  unsigned have = 0;  // one bit per required field
  std::string e = ForEachField(data, "worker", [&](uint16_t tag, std::string_view v) {
    uint64_t n = 0;
    switch (static_cast<WorkerField>(tag)) {
      case WorkerField::kSlot:
        if (!Number(v, INT_MAX, &n)) return Bad("worker slot");
        w->slot = static_cast<int>(n);
        have |= 1;
        break;
      case WorkerField::kPid:
        if (!Number(v, INT_MAX, &n) || n == 0) return Bad("worker pid");
        w->pid = static_cast<pid_t>(n);
        have |= 2;
        break;
      case WorkerField::kControlFd:
        if (!Number(v, INT_MAX, &n)) return Bad("worker control descriptor");
        w->control_fd = static_cast<int>(n);
        have |= 4;
        break;
      case WorkerField::kSeq:
        if (!Number(v, UINT64_MAX, &n)) return Bad("worker sequence number");
        w->seq = n;
        have |= 8;
        break;
      case WorkerField::kRetiring:
        if (!Number(v, 1, &n)) return Bad("worker retiring flag");
        w->retiring = n == 1;
        break;
      default:
        break;  // a later binary's field
    }
    return std::string();
  });
  if (e.empty() && have != 15) e = "a worker without its slot, pid, control descriptor or sequence";
  return e;
}

std::string DecodeFormat2(std::string_view hex, UpgradeState* st) {
  std::string bytes;
  if (!Unhex(hex, &bytes)) return "not hexadecimal";
  bool have_seq = false, have_port = false, ended = false;
  std::string e = ForEachField(bytes, "state", [&](uint16_t tag, std::string_view v) {
    uint64_t n = 0;
    if (ended) return std::string("fields after the end");
    switch (static_cast<StateField>(tag)) {
      case StateField::kSeq:
        if (!Number(v, UINT64_MAX, &n)) return Bad("sequence number");
        st->seq = n;
        have_seq = true;
        break;
      case StateField::kPort:
        if (!Number(v, UINT16_MAX, &n)) return Bad("port");
        st->port = static_cast<uint16_t>(n);
        have_port = true;
        break;
      case StateField::kSharedFd:
        if (!Number(v, INT_MAX, &n)) return Bad("shared descriptor");
        st->shared_fds.push_back(static_cast<int>(n));
        break;
      case StateField::kAclFd:
        if (!Number(v, INT_MAX, &n)) return Bad("users descriptor");
        st->acl_fd = static_cast<int>(n);
        break;
      case StateField::kScriptFd:
        if (!Number(v, INT_MAX, &n)) return Bad("scripts descriptor");
        st->script_fd = static_cast<int>(n);
        break;
      case StateField::kSlot:
        return DecodeSlot(v, &st->slots.emplace_back());
      case StateField::kWorker:
        return DecodeWorker(v, &st->workers.emplace_back());
      case StateField::kEnd:
        ended = true;
        break;
      default:
        break;  // a later binary's field
    }
    return std::string();
  });
  if (e.empty() && !ended) e = "truncated state (no end field)";
  if (e.empty() && !(have_seq && have_port)) e = "no sequence number or port";
  return e;
}

// ---- format 1: the text grammar of the binaries before format 2 ----

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The whole of text as a decimal number no larger than max.
template <typename T>
bool Decimal(std::string_view text, uint64_t max, T* out) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n > max) {
    return false;
  }
  *out = static_cast<T>(n);
  return true;
}

// "fd,fd," (a trailing comma after each).
bool Descriptors(std::string_view text, std::vector<int>* fds) {
  for (std::string_view item : Split(text, ',')) {
    if (item.empty()) continue;
    if (!Decimal(item, INT_MAX, &fds->emplace_back())) return false;
  }
  return true;
}

std::string DecodeFormat1(std::string_view text, UpgradeState* st) {
  std::vector<std::string_view> parts = Split(text, ';');
  if (parts.size() != 6) return "not six ';'-separated parts";
  if (!Decimal(parts[1], UINT64_MAX, &st->seq)) return Bad("sequence number");
  if (!Decimal(parts[2], UINT16_MAX, &st->port)) return Bad("port");
  if (!Descriptors(parts[3], &st->shared_fds)) return Bad("shared descriptors");
  for (std::string_view entry : Split(parts[4], '|')) {
    if (entry.empty()) continue;
    std::vector<std::string_view> kv = Split(entry, ':');
    UpgradeState::Slot& slot = st->slots.emplace_back();
    if (kv.size() != 2 || !Decimal(kv[0], INT_MAX, &slot.index) || !Descriptors(kv[1], &slot.fds)) {
      return Bad("slot");
    }
  }
  for (std::string_view entry : Split(parts[5], '|')) {
    if (entry.empty()) continue;
    std::vector<std::string_view> f = Split(entry, ':');
    UpgradeState::Worker& w = st->workers.emplace_back();
    bool ok = (f.size() == 4 || (f.size() == 5 && f[4] == "r")) &&
              Decimal(f[0], INT_MAX, &w.slot) && Decimal(f[1], INT_MAX, &w.pid) && w.pid > 0 &&
              Decimal(f[2], INT_MAX, &w.control_fd) && Decimal(f[3], UINT64_MAX, &w.seq);
    if (!ok) return Bad("worker");
    w.retiring = f.size() == 5;
  }
  return "";
}

}  // namespace

std::string EncodeUpgradeState(const UpgradeState& st) {
  FieldWriter f;
  f.PutU64(Tag(StateField::kSeq), st.seq);
  f.PutU64(Tag(StateField::kPort), st.port);
  for (int fd : st.shared_fds) f.PutU64(Tag(StateField::kSharedFd), static_cast<uint64_t>(fd));
  if (st.acl_fd >= 0) f.PutU64(Tag(StateField::kAclFd), static_cast<uint64_t>(st.acl_fd));
  if (st.script_fd >= 0) {
    f.PutU64(Tag(StateField::kScriptFd), static_cast<uint64_t>(st.script_fd));
  }
  for (const UpgradeState::Slot& s : st.slots) {
    FieldWriter slot;
    slot.PutU64(Tag(SlotField::kIndex), static_cast<uint64_t>(s.index));
    for (int fd : s.fds) slot.PutU64(Tag(SlotField::kFd), static_cast<uint64_t>(fd));
    for (int fd : s.tls_fds) slot.PutU64(Tag(SlotField::kTlsFd), static_cast<uint64_t>(fd));
    f.Put(Tag(StateField::kSlot), slot.data());
  }
  for (const UpgradeState::Worker& w : st.workers) {
    FieldWriter worker;
    worker.PutU64(Tag(WorkerField::kSlot), static_cast<uint64_t>(w.slot));
    worker.PutU64(Tag(WorkerField::kPid), static_cast<uint64_t>(w.pid));
    worker.PutU64(Tag(WorkerField::kControlFd), static_cast<uint64_t>(w.control_fd));
    worker.PutU64(Tag(WorkerField::kSeq), w.seq);
    worker.PutU64(Tag(WorkerField::kRetiring), w.retiring ? 1 : 0);
    f.Put(Tag(StateField::kWorker), worker.data());
  }
  f.PutU64(Tag(StateField::kEnd), 0);
  return std::string(kFormat2) + Hex(f.data());
}

std::string EncodeUpgradeStateFormat1(const UpgradeState& st) {
  // As the previous binaries wrote it (their Supervisor::Upgrade).
  std::string out = "1;" + std::to_string(st.seq) + ";" + std::to_string(st.port) + ";";
  for (int fd : st.shared_fds) out += std::to_string(fd) + ",";
  out += ";";
  for (const UpgradeState::Slot& s : st.slots) {
    out += std::to_string(s.index) + ":";
    for (int fd : s.fds) out += std::to_string(fd) + ",";
    out += "|";
  }
  out += ";";
  for (const UpgradeState::Worker& w : st.workers) {
    out += std::to_string(w.slot) + ":" + std::to_string(w.pid) + ":" +
           std::to_string(w.control_fd) + ":" + std::to_string(w.seq) + (w.retiring ? ":r" : "") +
           "|";
  }
  return out;
}

bool DecodeUpgradeState(std::string_view text, UpgradeState* state, std::string* error) {
  UpgradeState st;
  std::string e;
  if (text.starts_with(kFormat2)) {
    e = DecodeFormat2(text.substr(kFormat2.size()), &st);
  } else if (text.starts_with(kFormat1)) {
    e = DecodeFormat1(text, &st);
  } else {
    e = "an unknown format (from a later binary?)";
  }
  if (!e.empty()) {
    *error = e;
    return false;
  }
  *state = std::move(st);
  return true;
}

}  // namespace redhub::master
