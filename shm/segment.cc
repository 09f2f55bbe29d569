#include "segment.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>

#include "syserr.h"

namespace redhub::shm {
namespace bip = boost::interprocess;

namespace {

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string Describe(const char* what, const std::string& name, const std::exception& e) {
  return std::string(what) + "(" + name + ") failed: " + e.what();
}

std::string Octal(mode_t mode) {
  char buf[8];
  snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// The data (and the robust mutexes every worker trusts) must be ours alone:
// a segment someone else owns, or that group or others may read or write,
// could be read or changed behind our back. Checked on the descriptor that
// is mapped, so the file cannot be swapped in between.
bool CheckOwnership(int fd, const std::string& name, std::string* error) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *error = "fstat(" + name + ") failed: " + ErrnoText(errno);
    return false;
  }
  const uid_t self = geteuid();
  if (st.st_uid == self && (st.st_mode & 077) == 0) return true;
  *error = "shared memory segment " + name + " (/dev/shm" + name + ") is owned by uid " +
           std::to_string(st.st_uid) + " with mode " + Octal(st.st_mode) +
           ": refusing it, only a segment owned by this process's uid " + std::to_string(self) +
           " that group and others can neither read nor write is used (anyone else could read " +
           "or change the data)";
  return false;
}

}  // namespace

struct Segment::Mapping {
  bip::mapped_region region;
};

bool ComputeGeometry(uint32_t stripes, uint32_t page_size, uint64_t pages, Geometry* g,
                     std::string* error) {
  if (stripes == 0 || stripes > 2000) {
    *error = "stripes must be between 1 and 2000, not " + std::to_string(stripes);
    return false;
  }
  if (page_size < 4096 || page_size > (1u << 20) || (page_size & (page_size - 1)) != 0) {
    *error =
        "page_size must be a power of two from 4096 to 1048576, not " + std::to_string(page_size);
    return false;
  }
  if (pages < 16 || pages >= kNoPage) {
    *error = "the page pool must have from 16 to 2^32-2 pages, not " + std::to_string(pages);
    return false;
  }
  g->stripes = stripes;
  g->page_size = page_size;
  g->pages = pages;
  g->stripes_offset = RoundUp(sizeof(SegmentHeader), 64);
  g->owner_offset = RoundUp(g->stripes_offset + uint64_t{stripes} * sizeof(StripeHeader), 64);
  g->meta_offset = RoundUp(g->owner_offset + pages * sizeof(uint32_t), 64);
  g->pool_offset = RoundUp(g->meta_offset + pages * sizeof(PageMeta), page_size);
  g->total_bytes = g->pool_offset + pages * page_size;
  if (g->total_bytes > kMaxSegmentBytes) {
    *error = "a segment of " + std::to_string(g->total_bytes) + " bytes is over the layout's " +
             std::to_string(kMaxSegmentBytes) + "-byte limit";
    return false;
  }
  return true;
}

Segment::Segment(std::unique_ptr<Mapping> mapping, const Geometry& geometry)
    : mapping_(std::move(mapping)),
      base_(static_cast<char*>(mapping_->region.get_address())),
      geometry_(geometry) {}

Segment::~Segment() = default;

std::unique_ptr<Segment> Segment::Create(
    const std::string& name, const Geometry& g, bool replace,
    const std::function<std::optional<uint64_t>()>& memory_available, bool* existed,
    std::string* error) {
  *existed = false;
  if (replace) bip::shared_memory_object::remove(name.c_str());
  std::unique_ptr<bip::shared_memory_object> shm;
  try {
    bip::permissions perm;
    perm.set_permissions(0600);
    shm = std::make_unique<bip::shared_memory_object>(bip::create_only, name.c_str(),
                                                      bip::read_write, perm);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::already_exists_error) {
      *existed = true;
      *error = "shared memory segment " + name +
               " already exists (left by a previous run?): reuse it, replace it, or remove it";
    } else {
      *error = Describe("shm_open(O_CREAT|O_EXCL)", name, e);
    }
    return nullptr;
  }
  // shm_open's mode goes through the umask, and Boost ignores a failure of
  // its own fchmod: set 0600 here and check it.
  if (fchmod(shm->get_mapping_handle().handle, 0600) != 0) {
    *error = "fchmod(" + name + ", 0600) failed: " + ErrnoText(errno);
    bip::shared_memory_object::remove(name.c_str());
    return nullptr;
  }
  // posix_fallocate on tmpfs takes page after page until it runs out: a
  // segment larger than what is free would first take all of it (RAM, which
  // can wake the OOM killer) and then fail. Refuse it before taking anything.
  struct statvfs vfs;
  if (statvfs("/dev/shm", &vfs) == 0) {
    uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (g.total_bytes > free_bytes) {
      *error = "not enough space in /dev/shm: the segment needs " +
               std::to_string(g.total_bytes >> 20) + " MB, " + std::to_string(free_bytes >> 20) +
               " MB are free (enlarge /dev/shm, e.g. docker --shm-size, or lower maxmemory)";
      bip::shared_memory_object::remove(name.c_str());
      return nullptr;
    }
  }
  // Reserving more than the memory limit allows would get the process
  // OOM-killed half way, with nothing in its log.
  std::optional<uint64_t> available = memory_available ? memory_available() : std::nullopt;
  if (available && g.total_bytes > *available) {
    *error = "not enough memory under this process's cgroup limit: the segment needs " +
             std::to_string(g.total_bytes >> 20) + " MB, the limit leaves " +
             std::to_string(*available >> 20) +
             " MB (shared memory counts against it: raise it, e.g. docker --memory, systemd "
             "MemoryMax=, or lower maxmemory)";
    bip::shared_memory_object::remove(name.c_str());
    return nullptr;
  }
  // Reserve every byte now: tmpfs otherwise allocates on first touch, and a
  // full /dev/shm then kills the process with SIGBUS in the middle of a write.
  int fd = shm->get_mapping_handle().handle;
  int rc = posix_fallocate(fd, 0, static_cast<off_t>(g.total_bytes));
  if (rc != 0) {
    bip::shared_memory_object::remove(name.c_str());
    if (rc == ENOSPC) {
      *error = "not enough space in /dev/shm for " + std::to_string(g.total_bytes) +
               " bytes: posix_fallocate(" + name + "): " + ErrnoText(rc) +
               " (enlarge /dev/shm, e.g. docker --shm-size, or lower the store size)";
    } else {
      *error = "posix_fallocate(" + name + ", " + std::to_string(g.total_bytes) +
               ") failed: " + ErrnoText(rc);
    }
    return nullptr;
  }
  auto mapping = std::make_unique<Mapping>();
  try {
    mapping->region = bip::mapped_region(*shm, bip::read_write, 0, g.total_bytes);
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(name.c_str());
    *error = "mmap(MAP_SHARED, " + std::to_string(g.total_bytes) + ") of " + name +
             " failed: " + e.what();
    return nullptr;
  }
  return std::unique_ptr<Segment>(new Segment(std::move(mapping), g));
}

std::unique_ptr<Segment> Segment::Open(const std::string& name, std::string* error) {
  std::unique_ptr<bip::shared_memory_object> shm;
  bip::offset_t size = 0;
  try {
    shm =
        std::make_unique<bip::shared_memory_object>(bip::open_only, name.c_str(), bip::read_write);
    shm->get_size(size);
  } catch (const bip::interprocess_exception& e) {
    *error = Describe("shm_open", name, e);
    return nullptr;
  }
  if (!CheckOwnership(shm->get_mapping_handle().handle, name, error)) return nullptr;
  if (size < static_cast<bip::offset_t>(sizeof(SegmentHeader))) {
    *error = "shared memory segment " + name + " has " + std::to_string(size) +
             " bytes: not a RedHub store (or its creator died before reserving it)";
    return nullptr;
  }
  auto mapping = std::make_unique<Mapping>();
  try {
    mapping->region = bip::mapped_region(*shm, bip::read_write, 0, size);
  } catch (const bip::interprocess_exception& e) {
    *error = "mmap(MAP_SHARED, " + std::to_string(size) + ") of " + name + " failed: " + e.what();
    return nullptr;
  }
  const auto* h = static_cast<const SegmentHeader*>(mapping->region.get_address());
  uint64_t magic = h->magic.load(std::memory_order_acquire);
  if (magic == 0) {
    *error = "shared memory segment " + name +
             " was never initialised (its creator died during Create?): remove it";
    return nullptr;
  }
  if (magic != kMagic) {
    *error = "shared memory segment " + name + " is not a RedHub store (bad magic)";
    return nullptr;
  }
  if (h->layout_version != kLayoutVersion || h->header_bytes != sizeof(SegmentHeader) ||
      h->stripe_header_bytes != sizeof(StripeHeader) || h->page_meta_bytes != sizeof(PageMeta)) {
    *error = "shared memory segment " + name + " has store layout version " +
             std::to_string(h->layout_version) + " (header " + std::to_string(h->header_bytes) +
             "/" + std::to_string(h->stripe_header_bytes) + "/" +
             std::to_string(h->page_meta_bytes) + " bytes), this binary uses version " +
             std::to_string(kLayoutVersion) + " (" + std::to_string(sizeof(SegmentHeader)) + "/" +
             std::to_string(sizeof(StripeHeader)) + "/" + std::to_string(sizeof(PageMeta)) +
             "): refusing to attach; run the matching binary or remove the segment";
    return nullptr;
  }
  Geometry g;
  std::string why;
  if (!ComputeGeometry(h->stripes, h->page_size, h->pages, &g, &why) ||
      g.total_bytes != h->total_bytes || g.stripes_offset != h->stripes_offset ||
      g.owner_offset != h->owner_offset || g.meta_offset != h->meta_offset ||
      g.pool_offset != h->pool_offset || static_cast<uint64_t>(size) != g.total_bytes) {
    *error = "shared memory segment " + name + " has an inconsistent header (size " +
             std::to_string(size) + ", header says " + std::to_string(h->total_bytes) +
             (why.empty() ? "" : "; " + why) + "): refusing to attach";
    return nullptr;
  }
  return std::unique_ptr<Segment>(new Segment(std::move(mapping), g));
}

}  // namespace redhub::shm
