#pragma once
/// \file
/// Maps a decrypted WeCom callback payload (XML, or the JSON variant) to `core::Event`
/// (protocol notes §3). Pure: no I/O, no clock.

#include "bot/core/event.hpp"
#include "bot/core/result.hpp"

#include <string_view>

namespace qunbot::wecom {

/// Where the payload came from; copied into the event.
struct ParseContext {
    std::string app;    ///< configured app name
    std::string tenant; ///< the corp id (receiveid) the payload was addressed to
};

/// Parses the payload. Types this version does not know become `EventKind::unknown` with the
/// payload kept; only a payload that is not well-formed XML/JSON is an error ("malformed_payload").
[[nodiscard]] core::Result<core::Event> parse_event(std::string_view payload, const ParseContext& ctx);

/// Hex SHA-256 of `data` (used for dedup keys of payloads with no natural key).
[[nodiscard]] std::string sha256_hex(std::string_view data);

} // namespace qunbot::wecom
