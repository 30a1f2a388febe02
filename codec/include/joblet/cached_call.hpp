#pragma once
// What makes a function a cached one, for code that must recognise calls of cached functions
// without including the cache itself: the engine recognises a Parallel call whose tasks all call
// one cached function (a campaign: its task keys are known before anything runs) through this
// concept alone. CachedFunction (memory.hpp) satisfies it.

#include <concepts>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>

#include "joblet/hash.hpp"

namespace joblet {

// F caches the results of calls with arguments Args in a store: it can name each call's key and
// tell whether the result is stored, without running anything.
template <class F, class... Args>
concept CachedCallable = F::is_cached_function::value && requires(const F& f, const Args&... args) {
  { f.key(args...) } -> std::same_as<Hash128>;
  { f.check_call_in_cache(args...) } -> std::same_as<bool>;
  { f.name() } -> std::convertible_to<const std::string&>;
  // The cache directory; nullopt for a function that caches nothing.
  { f.location() } -> std::same_as<std::optional<std::filesystem::path>>;
};

}  // namespace joblet
