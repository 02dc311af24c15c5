#include "common/heap_trim.hpp"

#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "common/metrics.hpp"

using namespace beamlink;

namespace {

// Resident bytes of this process (/proc/self/statm).
std::size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcMalloc = false;  // ASan's allocator: mallinfo2 sees none of it
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kGlibcMalloc = false;
#else
constexpr bool kGlibcMalloc = true;
#endif
#else
constexpr bool kGlibcMalloc = true;
#endif

}  // namespace

TEST_CASE("heap trimmer gives a burst's freed memory back and leaves a steady heap alone") {
  if (!kGlibcMalloc) return;
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    HeapTrimmer::Options o;
    o.period = std::chrono::hours(1);  // driven by hand below
    o.threshold = 4u << 20;
    HeapTrimmer trimmer(&loop, o);
    CHECK_FALSE(trimmer.check());

    // A burst: 32 MiB in small blocks, then a block after them that stays,
    // so free() cannot give the burst back from the top of the heap.
    std::vector<std::unique_ptr<char[]>> burst;
    for (int i = 0; i < 64 * 1024; ++i) {
      burst.emplace_back(new char[512]);
      for (int j = 0; j < 512; j += 64) burst.back()[j] = static_cast<char>(i + j);
    }
    auto fence = std::make_unique<char[]>(512);
    fence[0] = 1;
    auto held = rss_bytes();
    burst.clear();
    burst.shrink_to_fit();
    auto freed = rss_bytes();
    MESSAGE("RSS holding the burst " << held / 1024 << " KiB, after free() " << freed / 1024
                                     << " KiB, free heap " << HeapTrimmer::heap().free / 1024
                                     << " KiB");
    CHECK(HeapTrimmer::heap().free >= (16u << 20));
    CHECK(freed > held - (16u << 20));  // free() alone kept most of it resident

    CHECK(trimmer.check());
    auto trimmed = rss_bytes();
    MESSAGE("after the trim " << trimmed / 1024 << " KiB");
    CHECK(trimmed + (16u << 20) < freed);
    CHECK(trimmer.trims() == 1);
    // The same free bytes do not trim again; a steady heap is left alone.
    CHECK_FALSE(trimmer.check());
    CHECK_FALSE(trimmer.check());
    CHECK(trimmer.trims() == 1);

    MetricsWriter m;
    trimmer.write_metrics(m);
    CHECK(m.text().find("beamlink_heap_trims_total 1\n") != std::string::npos);
    CHECK(m.text().find("beamlink_heap_bytes{state=\"free\"}") != std::string::npos);
  }
  // The trimmer's timer does not keep the loop alive, and is closed.
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}
