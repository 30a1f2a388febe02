// The fuzz target's body, run by every compiler: seeds and a fixed number of deterministic
// mutations of valid entries (tools/fuzz runs the real libFuzzer search under clang).

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "entry_format.hpp"
#include "joblet/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::uint8_t> valid_entry(std::uint8_t mode) {
  const std::map<std::string, std::vector<double>> value{{"a", {1, 2}}, {"b", {3}}};
  const std::string payload = joblet::encode(value);
  joblet::EntryMetadata metadata;
  metadata.function = "f";
  metadata.payload_size = payload.size();
  metadata.checksum = joblet::hash_bytes(payload.data(), payload.size());
  const std::string file = joblet::detail::encode_entry_prefix(metadata) + payload;
  std::vector<std::uint8_t> input{mode};
  input.insert(input.end(), file.begin(), file.end());
  return input;
}

TEST(FuzzSeeds, MutatedEntriesNeverCrash) {
  std::mt19937_64 random(12345);
  for (std::uint8_t mode : {0, 1, 2}) {
    const auto seed = valid_entry(mode);
    LLVMFuzzerTestOneInput(seed.data(), seed.size());
    for (int round = 0; round < 3000; ++round) {
      auto input = seed;
      const int mutations = 1 + static_cast<int>(random() % 8);
      for (int m = 0; m < mutations; ++m) {
        const std::size_t at = 1 + random() % (input.size() - 1);
        switch (random() % 4) {
          case 0:
            input[at] ^= static_cast<std::uint8_t>(1u << (random() % 8));
            break;
          case 1:
            input[at] = static_cast<std::uint8_t>(random());
            break;
          case 2:
            input.resize(at);
            break;
          default:
            // Large counts where sizes live.
            for (std::size_t i = at; i < std::min(input.size(), at + 8); ++i) input[i] = 0xff;
            break;
        }
        if (input.size() < 2) break;
      }
      LLVMFuzzerTestOneInput(input.data(), input.size());
    }
  }
}

}  // namespace
