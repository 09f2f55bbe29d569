// The mapping of the store's segment in this process, and its geometry: where
// each part of layout.h lies. Boost.Interprocess is used here only to create,
// open and map the segment (shared_memory_object + mapped_region); nothing
// else of Boost touches the data.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "layout.h"

namespace redhub::shm {

struct Geometry {
  uint32_t stripes = 0;
  uint32_t page_size = 0;
  uint64_t pages = 0;
  uint64_t stripes_offset = 0;
  uint64_t owner_offset = 0;
  uint64_t meta_offset = 0;
  uint64_t pool_offset = 0;
  uint64_t total_bytes = 0;

  bool operator==(const Geometry&) const = default;
};

// False (with a reason) for a geometry this layout cannot hold.
bool ComputeGeometry(uint32_t stripes, uint32_t page_size, uint64_t pages, Geometry* out,
                     std::string* error);

class Segment {
 public:
  // Creates the shm object (O_EXCL), reserves total_bytes with posix_fallocate
  // and maps it; the memory is zero. `replace` removes an existing one first.
  // memory_available, if set, tells what the caller's memory limit still
  // allows (nullopt: no limit), asked after `replace` removed the old
  // segment: tmpfs pages are charged to the limit, so a larger segment is
  // refused.
  static std::unique_ptr<Segment> Create(
      const std::string& name, const Geometry& geometry, bool replace,
      const std::function<std::optional<uint64_t>()>& memory_available, bool* existed,
      std::string* error);
  // Maps an existing segment and checks that its header describes this
  // layout; the geometry is taken from the header.
  static std::unique_ptr<Segment> Open(const std::string& name, std::string* error);
  ~Segment();

  char* base() const { return base_; }
  const Geometry& geometry() const { return geometry_; }
  SegmentHeader* header() const { return reinterpret_cast<SegmentHeader*>(base_); }

 private:
  struct Mapping;
  Segment(std::unique_ptr<Mapping> mapping, const Geometry& geometry);

  std::unique_ptr<Mapping> mapping_;
  char* base_ = nullptr;
  Geometry geometry_;
};

}  // namespace redhub::shm
