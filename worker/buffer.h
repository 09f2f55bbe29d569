// A connection's input buffer: bytes read from the socket and not yet parsed.
//
// Reads append at the tail, the parser consumes from the head. The unread
// bytes are moved to the front only when the tail runs out of room, and the
// storage doubles when that is not enough, so a request of any size costs
// amortised linear copying.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace redhub::worker {

class InputBuffer {
 public:
  InputBuffer() = default;
  ~InputBuffer() { std::free(data_); }
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;

  const char* data() const { return data_ + head_; }
  size_t size() const { return tail_ - head_; }
  size_t capacity() const { return cap_; }

  // Room for at least n more bytes at the tail. Returns false if memory is
  // exhausted.
  bool Reserve(size_t n) {
    if (cap_ - tail_ >= n) return true;
    size_t used = size();
    if (head_ > 0 && cap_ - used >= n) {
      std::memmove(data_, data_ + head_, used);
      head_ = 0;
      tail_ = used;
      return true;
    }
    size_t want = cap_ ? cap_ : 16 * 1024;
    while (want - used < n) want *= 2;
    char* grown = static_cast<char*>(std::malloc(want));
    if (grown == nullptr) return false;
    if (used) std::memcpy(grown, data_ + head_, used);
    std::free(data_);
    data_ = grown;
    cap_ = want;
    head_ = 0;
    tail_ = used;
    return true;
  }

  char* tail() { return data_ + tail_; }
  size_t tail_room() const { return cap_ - tail_; }
  void Commit(size_t n) { tail_ += n; }

  void Consume(size_t n) {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }

  // Gives memory back when the buffer is empty and large (after a big
  // request), so an idle connection costs little.
  void ShrinkIfIdle(size_t keep) {
    if (size() == 0 && cap_ > keep) {
      std::free(data_);
      data_ = nullptr;
      cap_ = head_ = tail_ = 0;
    }
  }

 private:
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

}  // namespace redhub::worker
