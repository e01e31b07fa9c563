#pragma once
/// \file
/// The WeCom AI bot (智能机器人, API mode) callback (protocol notes §1.11): JSON bodies
/// `{"encrypt": ...}` encrypted for receiveid "", whose plaintext is JSON with msgid, chattype,
/// chatid, from.userid, response_url, msgtype and a type-specific object. Mapped to the same
/// `core::Event`s as the rest: a group message that @-mentions the bot is a `message` in that
/// group, from the member. Pure.

#include "bot/core/event.hpp"
#include "bot/core/result.hpp"
#include "adapters/wecom/event_parser.hpp"

#include <string>
#include <string_view>

namespace qunbot::wecom {

/// Parses a decrypted AI-bot payload. Dedup key: the msgid ("开发者需据此进行事件排重").
/// Attributes: `response_url` (one use, valid one hour), `aibotid`, `chattype`, and for events
/// `eventtype`. Stream refreshes and events are kept as `unknown` with raw type
/// "aibot/stream", "aibot/event/<eventtype>"; only a payload that is not a JSON object with a
/// msgid and msgtype is an error ("malformed_payload").
[[nodiscard]] core::Result<core::Event> parse_aibot_event(std::string_view payload, const ParseContext& ctx);

/// Text with the leading @-mentions removed ("@小助手 抽奖" → "抽奖"): in a group the bot only
/// hears messages that mention it, and the mention is not part of what the member said.
[[nodiscard]] std::string strip_leading_mentions(std::string_view text);

} // namespace qunbot::wecom
