// Native tests of the runtime's threaded parts: the thread pool, float16 conversion, resize taps, the batcher
// and its prefetcher, exercised concurrently so that ThreadSanitizer / AddressSanitizer can see them work.
// Built and run by csrc/tests/run.sh (not part of the wheel). Numerical agreement with the Python reference
// is tested from Python (tests/test_batcher.py); here the results are compared across thread counts.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "batcher.h"
#include "half.h"
#include "resize.h"
#include "thread_pool.h"

using namespace medinfer;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++g_failed;
  }
}

void run(const char* name, const std::function<void()>& test) {
  const int failed_before = g_failed;
  try {
    test();
  } catch (const std::exception& e) {
    check(false, std::string(name) + " threw: " + e.what());
  }
  if (g_failed == failed_before) {
    ++g_passed;
    std::printf("ok   %s\n", name);
  } else {
    std::printf("FAIL %s\n", name);
  }
}

float from_bits(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

void test_pool_parallel_for_from_many_threads() {
  ThreadPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<long> total{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        std::vector<int> hits(1000, 0);
        pool.parallel_for(hits.size(), 7, 0, [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; ++i) ++hits[i];
        });
        long sum = 0;
        for (int h : hits) sum += h;
        total += sum;
      }
    });
  for (auto& c : callers) c.join();
  check(total == 4L * 50 * 1000, "every index visited exactly once per call");
}

void test_pool_nested_and_exceptions() {
  ThreadPool pool(1);  // one worker: a nested parallel_for must still finish (the caller works too)
  auto fut = pool.submit([&] {
    std::atomic<int> n{0};
    pool.parallel_for(100, 1, 0, [&](std::size_t b, std::size_t e) { n += static_cast<int>(e - b); });
    if (n != 100) throw std::runtime_error("nested parallel_for missed items");
  });
  fut.get();
  bool threw = false;
  try {
    pool.parallel_for(50, 1, 0, [](std::size_t b, std::size_t) {
      if (b == 17) throw std::invalid_argument("chunk 17");
    });
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "a chunk's exception reaches the caller");
}

void test_half_conversion() {
  const std::pair<float, std::uint16_t> known[] = {
      {0.0f, 0x0000},          {-0.0f, 0x8000},          {1.0f, 0x3c00},         {-2.0f, 0xc000},
      {65504.0f, 0x7bff},      {65519.99f, 0x7bff},      {65520.0f, 0x7c00},     {1e30f, 0x7c00},
      {std::ldexp(1.0f, -24), 0x0001},                   {std::ldexp(1.0f, -25), 0x0000},  // tie to even: 0
      {std::ldexp(3.0f, -25), 0x0002},                   {std::ldexp(1.0f, -14), 0x0400},
      {1.0f + std::ldexp(1.0f, -11), 0x3c00},            {1.0f + std::ldexp(3.0f, -11), 0x3c02},
      {INFINITY, 0x7c00},      {-INFINITY, 0xfc00},
  };
  for (const auto& [value, bits] : known) {
    const std::uint16_t got = float_to_half(value);
    check(got == bits, "float_to_half(" + std::to_string(value) + ") = " + std::to_string(got) + ", want " +
                           std::to_string(bits));
  }
  check((float_to_half(NAN) & 0x7c00) == 0x7c00 && (float_to_half(NAN) & 0x3ff) != 0, "NaN stays NaN");
  // The bulk path (F16C where present) and the portable one agree on every non-NaN bit pattern we try.
  std::mt19937 rng(12345);
  std::vector<float> values;
  for (int i = 0; i < (1 << 20); ++i) {
    const float f = from_bits(rng());
    if (!std::isnan(f)) values.push_back(f);
  }
  for (std::uint32_t e = 100; e < 145; ++e)  // dense around the float16 range, ties included
    for (std::uint32_t m = 0; m < (1u << 23); m += 4093) values.push_back(from_bits((e << 23) | m));
  std::vector<std::uint16_t> bulk(values.size());
  floats_to_halves(values.data(), bulk.data(), values.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < values.size(); ++i) mismatches += bulk[i] != float_to_half(values[i]);
  check(mismatches == 0, std::to_string(mismatches) + " bulk/portable mismatches (F16C: " +
                             (has_f16c() ? "yes" : "no") + ")");
}

void test_resize_axes() {
  for (auto [in, out] : {std::pair<std::size_t, std::size_t>{512, 256}, {7, 3}, {3, 7}, {1, 5}, {5, 1}, {9, 9}}) {
    for (bool aa : {true, false}) {
      const ResizeAxis ax = make_resize_axis(in, out, aa);
      for (std::size_t i = 0; i < out; ++i) {
        double sum = 0;
        for (std::int32_t k = 0; k < ax.count[i]; ++k) sum += ax.weights[i * ax.max_taps + k];
        check(std::fabs(sum - 1.0) < 1e-6, "weights sum to 1");
        check(ax.start[i] >= 0 && ax.start[i] + ax.count[i] <= static_cast<std::int32_t>(in), "taps inside");
      }
      if (in == out) check(ax.max_taps == 1, "identity resize has one tap");
    }
  }
}

struct Fixture {
  std::vector<std::vector<std::int16_t>> pixels;
  std::vector<SeriesInput> inputs;
  PreprocessParams params;

  Fixture() {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> value(-1024, 3000);
    const std::size_t shapes[][3] = {{5, 61, 47}, {1, 9, 13}, {12, 40, 40}};
    for (const auto& s : shapes) {
      pixels.emplace_back(s[0] * s[1] * s[2]);
      for (auto& p : pixels.back()) p = static_cast<std::int16_t>(value(rng));
      SeriesInput in;
      in.pixels = pixels.back().data();
      in.type = PixelType::kInt16;
      in.n = s[0];
      in.h = s[1];
      in.w = s[2];
      in.slopes = {1.0};
      in.intercepts = {-1024.0};
      inputs.push_back(in);
    }
    params.out_h = 17;
    params.out_w = 23;
    params.channels = 3;
    params.lo = -1350;
    params.hi = 150;
    params.scale = 2.0f / 1500;
    params.offset = 0.8f;
  }
};

std::vector<std::vector<float>> all_batches(const Batcher& b, ThreadPool& pool, std::size_t threads) {
  std::vector<std::vector<float>> out(b.num_batches(), std::vector<float>(b.bytes_per_batch() / 4));
  for (std::size_t i = 0; i < b.num_batches(); ++i) b.prepare(i, out[i].data(), pool, threads);
  return out;
}

void test_batcher_is_deterministic_across_threads() {
  Fixture f;
  ThreadPool pool(3);
  const Batcher b(f.params, 4, OutputType::kFloat32, f.inputs);
  check(b.total_slices() == 18 && b.num_batches() == 5, "18 slices in 5 batches of 4");
  const auto one = all_batches(b, pool, 1);
  const auto many = all_batches(b, pool, 0);
  check(one == many, "same bits with 1 and 4 threads");
  check(b.locate(5) == std::make_pair<std::size_t, std::size_t>(1, 0), "slice 5 is series 1, slice 0");
  const std::size_t row = b.elements_per_slice();
  bool padded_zero = true;
  for (std::size_t i = 2 * row; i < 4 * row; ++i) padded_zero &= one[4][i] == 0.0f;
  check(padded_zero, "rows past count are zero");
  bool in_range = true;
  for (const auto& batch : one)
    for (float v : batch) in_range &= v >= -1.0f - 1e-6f && v <= 1.0f + 1e-6f;
  check(in_range, "window-normalised values stay in [-1, 1]");
}

void test_prefetcher_overlaps_and_matches() {
  Fixture f;
  ThreadPool pool(2);
  const Batcher b(f.params, 3, OutputType::kFloat16, f.inputs);
  std::vector<std::vector<std::uint16_t>> expected(b.num_batches(), std::vector<std::uint16_t>(b.bytes_per_batch() / 2));
  for (std::size_t i = 0; i < b.num_batches(); ++i) b.prepare(i, expected[i].data(), pool, 1);
  // Several consumers, each with its own prefetcher on the shared pool, reading while the next batch is written.
  std::vector<std::thread> consumers;
  std::atomic<int> bad{0};
  for (int c = 0; c < 3; ++c)
    consumers.emplace_back([&] {
      std::vector<std::vector<std::uint16_t>> buf(2, std::vector<std::uint16_t>(b.bytes_per_batch() / 2));
      Prefetcher pre(b, pool, 0);
      pre.post(0, buf[0].data());
      for (std::size_t i = 0; i < b.num_batches(); ++i) {
        if (i + 1 < b.num_batches()) pre.post(i + 1, buf[(i + 1) % 2].data());
        const auto done = pre.wait(i);
        if (done.count != std::min<std::size_t>(3, b.total_slices() - 3 * i)) ++bad;
        if (buf[i % 2] != expected[i]) ++bad;  // the consumer reads batch i while i + 1 is being written
      }
    });
  for (auto& t : consumers) t.join();
  check(bad == 0, std::to_string(bad.load()) + " wrong batches from the prefetchers");
}

void test_prefetcher_errors_and_early_stop() {
  Fixture f;
  ThreadPool pool(2);
  const Batcher b(f.params, 2, OutputType::kFloat32, f.inputs);
  std::vector<float> buf(b.bytes_per_batch() / 4);
  {
    Prefetcher pre(b, pool, 0);
    pre.post(99, buf.data());  // no such batch
    bool threw = false;
    try {
      pre.wait(99);
    } catch (const std::out_of_range&) {
      threw = true;
    }
    check(threw, "a failed batch rethrows in wait()");
  }
  std::vector<std::vector<float>> bufs(b.num_batches(), std::vector<float>(b.bytes_per_batch() / 4));
  for (int rep = 0; rep < 20; ++rep) {
    Prefetcher pre(b, pool, 0);
    for (std::size_t i = 0; i < b.num_batches(); ++i) pre.post(i, bufs[i].data());
    pre.wait(0);
  }  // destroyed with batches pending: must stop, not hang or touch freed memory
  bool refused = false;
  try {
    Batcher bad(f.params, 0, OutputType::kFloat32, f.inputs);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  check(refused, "batch_size 0 is refused");
}

}  // namespace

int main() {
  run("thread pool: parallel_for from many threads", test_pool_parallel_for_from_many_threads);
  run("thread pool: nested calls and exceptions", test_pool_nested_and_exceptions);
  run("float16 conversion", test_half_conversion);
  run("resize taps", test_resize_axes);
  run("batcher: deterministic across threads", test_batcher_is_deterministic_across_threads);
  run("prefetcher: concurrent consumers", test_prefetcher_overlaps_and_matches);
  run("prefetcher: errors and early stop", test_prefetcher_errors_and_early_stop);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
