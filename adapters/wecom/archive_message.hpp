#pragma once
/// \file
/// The session archive's data (protocol notes §5), apart from the SDK calls: the GetChatData
/// answer, the RSA step (encrypt_random_key, base64 then RSA PKCS#1 v1.5 with the corp's private
/// key of that publickey_ver), and the decrypted messages mapped to `core::Event`. Pure.

#include "adapters/wecom/event_parser.hpp"
#include "bot/core/event.hpp"
#include "bot/core/result.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::wecom {

/// One encrypted record of a GetChatData answer.
struct ChatRecord {
    std::uint64_t seq = 0;
    std::string msgid;
    int publickey_ver = 0;
    std::string encrypt_random_key;
    std::string encrypt_chat_msg;
};

/// Reads a GetChatData answer; an errcode other than 0 is an error with its message.
[[nodiscard]] core::Result<std::vector<ChatRecord>> parse_chat_data(std::string_view json);

/// The corp's archive private keys, one per publickey_ver.
class ArchiveKeys {
public:
    ArchiveKeys();
    ~ArchiveKeys();
    ArchiveKeys(ArchiveKeys&&) noexcept;
    ArchiveKeys& operator=(ArchiveKeys&&) noexcept;
    /// Adds the PEM private key (PKCS#1 or PKCS#8) of `version`; the error never shows the key.
    core::Status add(int version, std::string_view pem);
    [[nodiscard]] bool has(int version) const;
    /// base64 → RSA PKCS#1 v1.5 decryption: the random key to hand to DecryptData. Error
    /// "archive_10007" when no key of that version is configured (the SDK's own code for it).
    [[nodiscard]] core::Result<std::string> random_key(int version, std::string_view encrypt_random_key) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Maps a decrypted message (JSON: msgid, action, from, tolist, roomid, msgtime, msgtype, ...)
/// to an event: group messages keep `roomid` as the group, 1:1 ones have no group; `revoke` is
/// `message_recalled`; `switch` records and unknown shapes stay `unknown`. Every message type
/// of the notes keeps its own `message_type`; types this version does not name are "other" with
/// the attribute `type`.
[[nodiscard]] core::Result<core::Event> map_archive_message(std::string_view plaintext, const ParseContext& ctx);

} // namespace qunbot::wecom
