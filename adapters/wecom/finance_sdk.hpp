#pragma once
/// \file
/// WeCom's session-archive SDK (会话内容存档, libWeWorkFinanceSdk_C.so, protocol notes §5), loaded at
/// run time with dlopen so that qunbot builds and runs without it. Only the C ABI of the official
/// header is used, through its accessor functions (NewSlice/GetContentFromSlice/..., never the
/// structs' layout). Calls block (the SDK does its own HTTPS): use it from one dedicated thread.

#include "bot/core/result.hpp"
#include "bot/core/secret.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace qunbot::wecom {

/// The meaning of an SDK return code (10000 参数错误 ... 10011 证书错误), for messages.
[[nodiscard]] std::string finance_sdk_error(int code);

class FinanceSdk {
public:
    /// Loads `library` and resolves every function; the error names what is missing.
    static core::Result<std::unique_ptr<FinanceSdk>> load(const std::string& library);
    ~FinanceSdk();
    FinanceSdk(const FinanceSdk&) = delete;
    FinanceSdk& operator=(const FinanceSdk&) = delete;

    /// NewSdk + Init with the corp id and the archive Secret (聊天内容存档的Secret).
    core::Status init(const std::string& corp_id, const core::Secret& secret);
    /// GetChatData from after `seq`, at most `limit` (≤ 1000): the SDK's JSON text.
    core::Result<std::string> chat_data(std::uint64_t seq, unsigned limit, int timeout_s);
    /// DecryptData with the RSA-decrypted random key: the message's JSON text.
    core::Result<std::string> decrypt(const std::string& random_key, const std::string& encrypt_chat_msg);
    /// One chunk of a media file: `index` empty for the first; `next_index` for the next call.
    struct Chunk {
        std::string data;
        std::string next_index;
        bool finished = false;
    };
    core::Result<Chunk> media_chunk(const std::string& sdkfileid, const std::string& index, int timeout_s);
    /// The whole file, chunk by chunk; "media_too_large" past `max_bytes`.
    core::Result<std::string> media(const std::string& sdkfileid, std::size_t max_bytes, int timeout_s);

    struct Api;

private:
    FinanceSdk() = default;
    void* handle_ = nullptr;
    void* sdk_ = nullptr;
    std::unique_ptr<Api> api_;
};

} // namespace qunbot::wecom
