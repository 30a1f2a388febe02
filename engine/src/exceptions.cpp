// The process's table of exception types that cross process boundaries as themselves
// (joblet/exceptions.hpp), with the standard ones and joblet's own in it from the start.
#include "joblet/exceptions.hpp"

#include <functional>
#include <future>
#include <ios>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>
#include <typeindex>
#include <unordered_map>
#include <variant>

#include "joblet/cached_call.hpp"

namespace joblet::detail {
namespace {

std::span<const std::byte> bytes_of(const std::string& text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// std::system_error: the code's value and category travel, and what() is made as it was.
struct SystemErrorCodec {
  static void save(const std::exception& error, std::string& payload) {
    const std::error_code& code = static_cast<const std::system_error&>(error).code();
    encode(std::pair<int, std::string>(code.value(), code.category().name()), payload);
  }

  static std::exception_ptr make(const std::string& message, std::span<const std::byte> payload,
                                 const TaskError& origin) {
    const auto [value, category_name] = decode<std::pair<int, std::string>>(payload);
    const std::error_category* category = nullptr;
    for (const std::error_category* known :
         {&std::generic_category(), &std::system_category(), &std::iostream_category(), &std::future_category()}) {
      if (category_name == known->name()) category = known;
    }
    if (category == nullptr) throw SerializationError("no error category named " + category_name + " here");
    const std::error_code code(value, *category);
    // what() is the argument the error was made with, then ": " and the code's message.
    const std::string suffix = ": " + code.message();
    if (message == code.message()) return nest_origin(std::system_error(code), origin);
    if (message.size() > suffix.size() && message.ends_with(suffix)) {
      return nest_origin(std::system_error(code, message.substr(0, message.size() - suffix.size())), origin);
    }
    return nest_origin(std::system_error(code, message), origin);
  }
};

template <class E>
ExceptionCodec codec_of() {
  return {&typeid(E), &ExceptionCodecFor<E>::save, &ExceptionCodecFor<E>::make};
}

class ExceptionTable {
 public:
  ExceptionTable() {
    for (const ExceptionCodec& codec : {
             codec_of<std::exception>(),
             codec_of<std::runtime_error>(),
             codec_of<std::logic_error>(),
             codec_of<std::invalid_argument>(),
             codec_of<std::domain_error>(),
             codec_of<std::length_error>(),
             codec_of<std::out_of_range>(),
             codec_of<std::range_error>(),
             codec_of<std::overflow_error>(),
             codec_of<std::underflow_error>(),
             codec_of<std::bad_alloc>(),
             codec_of<std::bad_array_new_length>(),
             codec_of<std::bad_cast>(),
             codec_of<std::bad_optional_access>(),
             codec_of<std::bad_variant_access>(),
             codec_of<std::bad_function_call>(),
             ExceptionCodec{&typeid(std::system_error), &SystemErrorCodec::save, &SystemErrorCodec::make},
             codec_of<Error>(),
             codec_of<ConfigError>(),
             codec_of<TimeoutError>(),
             codec_of<SerializationError>(),
             codec_of<StorageError>(),
             codec_of<RetriesExhaustedError>(),
             codec_of<NotRunError>(),
             // A campaign's task whose key another process computes (engine/src/campaign_start.cpp).
             codec_of<ComputingElsewhere>(),
         }) {
      insert(codec);
    }
  }

  bool add(const ExceptionCodec& codec) {
    std::unique_lock lock(mutex_);
    return insert(codec);
  }

  // The codec for exceptions of exactly this type, and the name it travels under.
  std::optional<std::pair<ExceptionCodec, std::string>> find(const std::type_info& type) const {
    std::shared_lock lock(mutex_);
    const auto found = names_.find(type);
    if (found == names_.end()) return std::nullopt;
    return std::pair(by_name_.find(found->second)->second, found->second);
  }

  std::optional<ExceptionCodec> find(const std::string& name) const {
    std::shared_lock lock(mutex_);
    const auto found = by_name_.find(name);
    if (found == by_name_.end()) return std::nullopt;
    return found->second;
  }

 private:
  bool insert(const ExceptionCodec& codec) {
    std::string name = demangle(codec.type->name());
    const auto [at, added] = by_name_.try_emplace(name, codec);
    if (!added) {
      if (*at->second.type == *codec.type) return false;
      throw ConfigError("register_exception: two different exception types are named " + name +
                        " (classes in anonymous namespaces of different files?), so an error of one "
                        "could not be told from the other: rename one of them or register only one");
    }
    names_.emplace(*codec.type, std::move(name));
    return true;
  }

  mutable std::shared_mutex mutex_;
  std::map<std::string, ExceptionCodec, std::less<>> by_name_;
  std::unordered_map<std::type_index, std::string> names_;
};

ExceptionTable& exception_table() {
  static ExceptionTable table;
  return table;
}

void save_registered(const std::exception& error, EncodedException& out) {
  const auto registered = exception_table().find(typeid(error));
  if (!registered) return;
  try {
    registered->first.save(error, out.payload);
  } catch (...) {
    // Left for the receiver to report as a TaskError, which the empty payload will make it do
    // for a type that needs one.
    out.payload.clear();
  }
}

}  // namespace

bool add_exception_codec(const ExceptionCodec& codec) { return exception_table().add(codec); }

EncodedException encode_exception(const std::exception_ptr& error) {
  EncodedException out;
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    // The receiving side adds where it happened; the site is not repeated in the message.
    out.type = current_exception_type_name();
    out.message = e.message();
    save_registered(e, out);
  } catch (const std::exception& e) {
    out.type = current_exception_type_name();
    out.message = e.what();
    save_registered(e, out);
  } catch (...) {
    out.type = current_exception_type_name();
    out.message = describe_exception(error);
  }
  return out;
}

std::exception_ptr make_exception(const EncodedException& error, const ErrorSite& where) noexcept {
  try {
    TaskError origin(error.type, error.message, where);
    if (const auto codec = exception_table().find(error.type)) {
      try {
        return codec->make(error.message, bytes_of(error.payload), origin);
      } catch (...) {
        // Bytes that do not make the type (another build of the program?): its name will do.
      }
    }
    return std::make_exception_ptr(std::move(origin));
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace joblet::detail
