// Gives freed heap memory back to the kernel after a burst.
//
// glibc's free() returns memory to the kernel only from the top of the heap.
// After a burst — 10,000 idle connections held to their handshake deadline,
// a client pipelining requests, a delivery queue filled while a node was
// away — the chunks freed below a live allocation stay resident, so RSS stays
// at the burst's peak (13.9 MiB after a 10,000-connection flood, against
// 6.6 MiB idle). Every `period`, HeapTrimmer looks at the free bytes the
// allocator keeps; when they grew by at least `threshold` over the least seen
// since its last trim, malloc_trim(0) releases the free pages of every arena.
// A steady process is never trimmed; a burst is trimmed once, within
// `period` of ending (freed chunks stay free after a trim, only their pages
// go, so the same bytes do not trigger it twice).
//
// Thread: the loop's thread. Its timer does not keep the loop alive.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "common/uv_handle.hpp"

namespace beamlink {

class MetricsWriter;

class HeapTrimmer {
 public:
  struct Options {
    std::chrono::milliseconds period{10000};
    std::size_t threshold = 1u << 20;  // free bytes grown by
  };
  struct Heap {
    std::size_t in_use = 0;  // allocated, from the arenas and mmap
    std::size_t free = 0;    // free chunks kept in the arenas
  };

  HeapTrimmer(uv_loop_t* loop, Options opts);
  explicit HeapTrimmer(uv_loop_t* loop) : HeapTrimmer(loop, Options{}) {}
  HeapTrimmer(const HeapTrimmer&) = delete;
  HeapTrimmer& operator=(const HeapTrimmer&) = delete;

  // What the timer does: trims if the free bytes grew by `threshold` over
  // their low since the last trim. True if it trimmed.
  bool check();
  // The allocator's own figures (glibc's mallinfo2).
  static Heap heap();
  std::uint64_t trims() const { return trims_; }
  // beamlink_heap_bytes{state} and beamlink_heap_trims_total.
  void write_metrics(MetricsWriter& m) const;

 private:
  Options opts_;
  UvHandle<uv_timer_t> timer_;
  std::size_t low_ = 0;  // least free bytes seen since the last trim
  std::uint64_t trims_ = 0;
};

}  // namespace beamlink
