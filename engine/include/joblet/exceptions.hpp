#pragma once
/// @file
/// Exceptions that keep their type across processes and MPI ranks, as joblib's do.
///
/// On threads and sequential a task's exception reaches the caller as it was thrown. Where it
/// crossed a process boundary (processes, mpi) it is made again on the caller's side from its
/// type's name and message: the standard exception types (std::runtime_error and the others of
/// `<stdexcept>`, std::system_error with its code, std::bad_alloc, ...) and joblet's own errors
/// always, other types once registered:
///
/// @code
///   struct SolverDiverged : std::runtime_error { using std::runtime_error::runtime_error; };
///   joblet::register_exception<SolverDiverged>();  // at startup, in main(), on every rank
///
///   try { parallel(tasks); } catch (const SolverDiverged& e) {
///     auto site = joblet::error_site(e);  // task index, rank, host and pid of the failure
///   }
/// @endcode
///
/// A registered type is made again from, in this order of preference:
///   1. a constructor (std::string message, joblet::ErrorSite): joblet::Error's subclasses;
///   2. its cereal serialize() (or save()/load()) and a default constructor: every field comes
///      back, but what() is whatever the decoded object says;
///   3. a constructor from the std::string that what() returned;
///   4. a default constructor (std::bad_alloc): the type alone.
///
/// Types that are not registered (exactly: a subclass of a registered type is not) come back as
/// joblet::TaskError carrying the type's name and the message, as they always did.
///
/// The exception made again carries where the task failed as a nested joblet::TaskError
/// (std::rethrow_if_nested, or joblet::error_site()), except joblet::Error's subclasses and final
/// classes: the first carry their site themselves, the second cannot be nested.

#include <concepts>
#include <exception>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "joblet/codec.hpp"
#include "joblet/error.hpp"

namespace joblet {

namespace detail {

/// How one exception type crosses a process boundary.
struct ExceptionCodec {
  const std::type_info* type = nullptr;
  /// Appends what, beyond its what(), makes the exception again.
  void (*save)(const std::exception& error, std::string& payload) = nullptr;
  /// The exception again; `origin` says where it was thrown. Throws SerializationError for
  /// bytes that do not hold the type.
  std::exception_ptr (*make)(const std::string& message, std::span<const std::byte> payload,
                             const TaskError& origin) = nullptr;
};

/// Adds `codec` to the process's table; false when its type was added already. Throws ConfigError
/// when another type has the same name (two classes of that name in anonymous namespaces).
bool add_exception_codec(const ExceptionCodec& codec);

/// `error` thrown with `origin` nested in it, so that the exception caught is still an E.
template <class E>
std::exception_ptr nest_origin(E&& error, const TaskError& origin) {
  using Plain = std::remove_cvref_t<E>;
  if constexpr (std::is_final_v<Plain> || std::derived_from<Plain, std::nested_exception>) {
    return std::make_exception_ptr(std::forward<E>(error));
  } else {
    try {
      throw origin;
    } catch (...) {
      try {
        std::throw_with_nested(std::forward<E>(error));
      } catch (...) {
        return std::current_exception();
      }
    }
  }
}

template <class E>
struct ExceptionCodecFor {
  static constexpr bool kWithSite = std::constructible_from<E, std::string, ErrorSite>;
  static constexpr bool kEncoded = !kWithSite && Encodable<E> && std::default_initializable<E>;
  static constexpr bool kFromMessage = std::constructible_from<E, std::string>;

  static void save(const std::exception& error, std::string& payload) {
    if constexpr (kEncoded) encode(static_cast<const E&>(error), payload);
  }

  static std::exception_ptr make(const std::string& message, std::span<const std::byte> payload,
                                 const TaskError& origin) {
    if constexpr (kWithSite) {
      return std::make_exception_ptr(E(message, origin.site()));
    } else if constexpr (kEncoded) {
      return nest_origin(decode<E>(payload), origin);
    } else if constexpr (kFromMessage) {
      return nest_origin(E(message), origin);
    } else {
      return nest_origin(E(), origin);
    }
  }
};

}  // namespace detail

/// Lets exceptions of type E that tasks throw in other processes or on other ranks reach the
/// caller as E (see above for what E needs). Call it in every process of the program before
/// the Parallel calls that may throw it (on every rank under MPI: the rank that decodes the
/// error must know the type). Returns false when E was registered already; throws ConfigError
/// when another type of the same name was.
template <class E>
bool register_exception() {
  static_assert(std::derived_from<E, std::exception>, "register_exception<E>: E must derive from std::exception");
  using Codec = detail::ExceptionCodecFor<E>;
  static_assert(Codec::kWithSite || Codec::kEncoded || Codec::kFromMessage || std::default_initializable<E>,
                "register_exception<E>: E needs a constructor from std::string (its message), or a cereal "
                "serialize() and a default constructor, or a default constructor");
  return detail::add_exception_codec({&typeid(E), &Codec::save, &Codec::make});
}

namespace detail {
/// What crosses the boundary for a task's exception: its type's name, its message (what(), or
/// joblet::Error's message without the site) and, for registered types, what makes it again.
struct EncodedException {
  std::string type;
  std::string message;
  std::string payload;
};
EncodedException encode_exception(const std::exception_ptr& error);
/// The exception again: the registered type, or a TaskError naming it. Never throws.
std::exception_ptr make_exception(const EncodedException& error, const ErrorSite& where) noexcept;
}  // namespace detail

}  // namespace joblet
