#pragma once
/// \file
/// The outer POST body of a WeCom callback, XML (`<xml><ToUserName/><AgentID/><Encrypt/></xml>`)
/// or JSON (`{"tousername","encrypt","agentid"}`, key case varies between official samples,
/// notes §1.6). Only `Encrypt` is signed; the other fields are informational.

#include "bot/core/result.hpp"

#include <string>
#include <string_view>

namespace qunbot::wecom {

struct Envelope {
    std::string encrypt;
    std::string to_user_name;
    std::string agent_id;
    bool json = false; ///< the body was JSON (a passive reply should then be JSON too)
};

/// Error codes: "malformed_body" (not XML/JSON, or broken), "missing_encrypt".
[[nodiscard]] core::Result<Envelope> parse_envelope(std::string_view body);

} // namespace qunbot::wecom
