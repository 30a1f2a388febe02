#include "joblet/hash.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cstring>
#include <new>

namespace joblet {
namespace detail {
#if defined(__x86_64__) && defined(JOBLET_HAVE_XXH3_AVX2)
void xxh3_128_update_avx2(void* state, const void* data, std::size_t size) noexcept;
#endif
}  // namespace detail

namespace {

using UpdateFunction = void (*)(void*, const void*, std::size_t) noexcept;

void update_baseline(void* state, const void* data, std::size_t size) noexcept {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state), data, size);
}

UpdateFunction pick_update() noexcept {
#if defined(__x86_64__) && defined(JOBLET_HAVE_XXH3_AVX2)
  if (__builtin_cpu_supports("avx2")) return &detail::xxh3_128_update_avx2;
#endif
  return &update_baseline;
}

// Chosen once; small updates (one scalar field) do not pay for the check.
const UpdateFunction g_update = pick_update();

XXH3_state_t* as_state(unsigned char* bytes) noexcept { return std::launder(reinterpret_cast<XXH3_state_t*>(bytes)); }
const XXH3_state_t* as_state(const unsigned char* bytes) noexcept {
  return std::launder(reinterpret_cast<const XXH3_state_t*>(bytes));
}

constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string Hash128::hex() const {
  std::string text(32, '0');
  write_hex(text.data());
  return text;
}

void Hash128::write_hex(char* out) const noexcept {
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kHexDigits[(high >> (4 * i)) & 0xf];
    out[31 - i] = kHexDigits[(low >> (4 * i)) & 0xf];
  }
}

std::optional<Hash128> Hash128::from_hex(std::string_view text) {
  if (text.size() != 32) return std::nullopt;
  Hash128 hash;
  for (std::size_t i = 0; i < 32; ++i) {
    const int digit = hex_value(text[i]);
    if (digit < 0) return std::nullopt;
    std::uint64_t& half = i < 16 ? hash.high : hash.low;
    half = (half << 4) | static_cast<std::uint64_t>(digit);
  }
  return hash;
}

Hasher::Hasher() noexcept {
  static_assert(sizeof(XXH3_state_t) <= kStateSize, "Hasher::kStateSize is too small for this xxHash");
  static_assert(alignof(XXH3_state_t) <= 64, "Hasher's state alignment is too small for this xxHash");
  new (state_) XXH3_state_t;
  reset();
}

Hasher::Hasher(const Hasher& other) noexcept {
  new (state_) XXH3_state_t;
  XXH3_copyState(as_state(state_), as_state(other.state_));
}

Hasher& Hasher::operator=(const Hasher& other) noexcept {
  if (this != &other) XXH3_copyState(as_state(state_), as_state(other.state_));
  return *this;
}

Hasher& Hasher::update_bytes(const void* data, std::size_t size) noexcept {
  if (size != 0) g_update(as_state(state_), data, size);
  return *this;
}

Hasher& Hasher::update_text(std::string_view text) noexcept {
  const auto length = static_cast<std::uint64_t>(text.size());
  update_bytes(&length, sizeof length);
  return update_bytes(text.data(), text.size());
}

Hash128 Hasher::digest() const noexcept {
  const XXH128_hash_t digest = XXH3_128bits_digest(as_state(state_));
  return Hash128{digest.high64, digest.low64};
}

void Hasher::reset() noexcept { XXH3_128bits_reset(as_state(state_)); }

Hash128 hash_bytes(const void* data, std::size_t size) noexcept {
  Hasher hasher;
  hasher.update_bytes(data, size);
  return hasher.digest();
}

namespace detail {

void HashSink::write(const void* data, std::size_t size) { target_->update_bytes(data, size); }

HashSink::HashSink(std::unique_ptr<Hasher> owned) : owned_(std::move(owned)), target_(owned_.get()) {}

HashSink HashSink::fresh() const { return HashSink(std::make_unique<Hasher>()); }

Hash128 HashSink::take_digest() {
  const Hash128 digest = target_->digest();
  target_->reset();
  return digest;
}

}  // namespace detail
}  // namespace joblet
