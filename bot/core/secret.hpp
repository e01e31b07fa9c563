#pragma once
/// \file
/// `Secret` holds a credential (corp secret, callback token, AES key, merchant key). It has no
/// stream or fmt output, so it cannot end up in a log line or an error message by accident;
/// code that really needs the bytes calls `reveal()`, which is easy to grep for.

#include <string>
#include <string_view>

namespace qunbot::core {

class Secret {
public:
    Secret() = default;
    explicit Secret(std::string value) : value_(std::move(value)) {}
    Secret(const Secret&) = default;
    Secret& operator=(const Secret&) = default;
    Secret(Secret&&) noexcept = default;
    Secret& operator=(Secret&&) noexcept = default;
    ~Secret();

    [[nodiscard]] std::string_view reveal() const noexcept { return value_; }
    [[nodiscard]] bool empty() const noexcept { return value_.empty(); }
    /// A printable stand-in: "<secret:N bytes>".
    [[nodiscard]] std::string redacted() const;

private:
    std::string value_;
};

} // namespace qunbot::core
