#pragma once
/// \file
/// A minimal `std::expected`-like result (C++23 is not available on g++ 12): expected failures
/// are values, exceptions are reserved for bugs and start-up.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace qunbot::core {

/// An error value: a machine-readable code (stable, used as a metric label) and a message for
/// people. Messages never contain secrets.
struct Error {
    std::string code;
    std::string message;
};

/// Holds either a `T` or an error (`Error` unless a module has a richer error type).
template <class T, class E = Error>
class Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(E error) : v_(std::move(error)) {}

    [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(v_); }
    const T& value() const& { assert(ok()); return std::get<0>(v_); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const E& error() const { assert(!ok()); return std::get<1>(v_); }

private:
    std::variant<T, E> v_;
};

/// Result of an operation with no value.
struct Ok {};
using Status = Result<Ok>;

inline Error make_error(std::string code, std::string message)
{
    return Error{std::move(code), std::move(message)};
}

} // namespace qunbot::core
