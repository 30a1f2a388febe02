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

// A valid entry file holding `payload`.
std::string entry_file(const std::string& payload) {
  joblet::EntryMetadata metadata;
  metadata.function = "f";
  // Key parts, so that mutations reach their parser too.
  metadata.key_parts =
      joblet::KeyParts{.version = "1",
                       .source_salt = "",
                       .build_salt = "",
                       .arguments = {{.ignored = false, .hash = joblet::hash_value(3)}, {.ignored = true}}};
  metadata.payload_size = payload.size();
  metadata.checksum = joblet::hash_bytes(payload.data(), payload.size());
  return joblet::detail::encode_entry_prefix(metadata) + payload;
}

std::vector<std::uint8_t> valid_entry(std::uint8_t mode) {
  const std::map<std::string, std::vector<double>> value{{"a", {1, 2}}, {"b", {3}}};
  const std::string file = entry_file(joblet::encode(value));
  std::vector<std::uint8_t> input(1 + file.size());
  input[0] = mode;
  std::memcpy(input.data() + 1, file.data(), file.size());
  return input;
}

// Mode 1's input: the metadata of a valid entry whose payload is as long (the target splits its
// input in halves), then that payload: unmutated, it reads as a valid entry, so mutations land
// in the metadata decoder and the key parts' parser.
std::vector<std::uint8_t> valid_metadata() {
  std::uint64_t metadata_size = 0;
  std::memcpy(&metadata_size, entry_file("").data() + 16, sizeof metadata_size);  // whatever the payload
  const std::string file = entry_file(std::string(metadata_size, 'p'));
  std::vector<std::uint8_t> input(1 + 2 * metadata_size);
  input[0] = 1;
  std::memcpy(input.data() + 1, file.data() + 64, metadata_size);
  std::memcpy(input.data() + 1 + metadata_size, file.data() + file.size() - metadata_size, metadata_size);
  return input;
}

TEST(FuzzSeeds, MutatedEntriesNeverCrash) {
  std::mt19937_64 random(12345);
  for (const auto& seed : {valid_entry(0), valid_entry(1), valid_entry(2), valid_metadata()}) {
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
