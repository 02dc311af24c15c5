#include "common/heap_trim.hpp"

#include <malloc.h>

#include <algorithm>

#include "common/metrics.hpp"

namespace beamlink {

HeapTrimmer::HeapTrimmer(uv_loop_t* loop, Options opts) : opts_(opts), low_(heap().free) {
  if (timer_.init(loop, this, uv_timer_init) != 0) return;  // cannot fail for a timer
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_.get()));
  auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, opts_.period.count()));
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<HeapTrimmer*>(t->data)->check(); }, ms, ms);
}

HeapTrimmer::Heap HeapTrimmer::heap() {
  struct mallinfo2 mi = ::mallinfo2();
  return {mi.uordblks + mi.hblkhd, mi.fordblks};
}

bool HeapTrimmer::check() {
  auto free = heap().free;
  low_ = std::min(low_, free);
  if (free - low_ < opts_.threshold) return false;
  ::malloc_trim(0);
  ++trims_;
  low_ = free;
  return true;
}

void HeapTrimmer::write_metrics(MetricsWriter& m) const {
  auto h = heap();
  m.family("beamlink_heap_bytes", MetricsWriter::Type::gauge,
           "Heap bytes by state: in_use (allocated) or free (kept by the allocator).");
  m.sample("beamlink_heap_bytes", static_cast<std::uint64_t>(h.in_use), {{"state", "in_use"}});
  m.sample("beamlink_heap_bytes", static_cast<std::uint64_t>(h.free), {{"state", "free"}});
  m.counter("beamlink_heap_trims_total",
            "Times freed heap memory was given back to the kernel after a burst.", trims_);
}

}  // namespace beamlink
