#pragma once
// The parameter types of a callable, when it has exactly one signature (a function, a function
// pointer, a lambda or functor with one non-template operator(), a std::function). A cached
// function hashes each argument as its parameter's type, so that cached(1) and cached(1.0)
// on a function taking double are one entry, and a string literal passed for a std::string
// parameter hashes as that string. Generic lambdas have no single signature: their arguments
// hash as passed (after decay).

#include <cstddef>
#include <tuple>
#include <type_traits>

namespace joblet::detail {

template <class... P>
struct KnownSignature {
  static constexpr bool known = true;
  using parameters = std::tuple<std::remove_cvref_t<P>...>;
};
struct UnknownSignature {
  static constexpr bool known = false;
};

template <class F>
struct MemberSignature : UnknownSignature {};
#define JOBLET_DETAIL_MEMBER_SIGNATURE(QUALIFIERS) \
  template <class R, class C, class... P>          \
  struct MemberSignature<R (C::*)(P...) QUALIFIERS> : KnownSignature<P...> {};
JOBLET_DETAIL_MEMBER_SIGNATURE()
JOBLET_DETAIL_MEMBER_SIGNATURE(const)
JOBLET_DETAIL_MEMBER_SIGNATURE(&)
JOBLET_DETAIL_MEMBER_SIGNATURE(const&)
JOBLET_DETAIL_MEMBER_SIGNATURE(noexcept)
JOBLET_DETAIL_MEMBER_SIGNATURE(const noexcept)
JOBLET_DETAIL_MEMBER_SIGNATURE(&noexcept)
JOBLET_DETAIL_MEMBER_SIGNATURE(const& noexcept)
#undef JOBLET_DETAIL_MEMBER_SIGNATURE

template <class F, class = void>
struct Signature : UnknownSignature {};
template <class F>
struct Signature<F, std::void_t<decltype(&F::operator())>> : MemberSignature<decltype(&F::operator())> {};
template <class R, class... P>
struct Signature<R (*)(P...), void> : KnownSignature<P...> {};
template <class R, class... P>
struct Signature<R (*)(P...) noexcept, void> : KnownSignature<P...> {};

// The type argument I of a call with argument type A hashes as.
template <class F, std::size_t I, class A, class = void>
struct CanonicalParameter {
  using type = std::remove_cvref_t<A>;
};
template <class F, std::size_t I, class A>
struct CanonicalParameter<F, I, A, std::enable_if_t<Signature<F>::known>> {
  // The call compiled against this signature, so I is within it.
  using type = std::tuple_element_t<I, typename Signature<F>::parameters>;
};

}  // namespace joblet::detail
