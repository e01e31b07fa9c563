#include "adapters/wecom/finance_sdk.hpp"

#include <dlfcn.h>

#include <array>
#include <utility>

namespace qunbot::wecom {

// The official header's functions, with opaque pointers for its structs.
struct FinanceSdk::Api {
    void* (*NewSdk)() = nullptr;
    int (*Init)(void*, const char*, const char*) = nullptr;
    void (*DestroySdk)(void*) = nullptr;
    int (*GetChatData)(void*, unsigned long long, unsigned int, const char*, const char*, int, void*) = nullptr;
    int (*DecryptData)(const char*, const char*, void*) = nullptr;
    int (*GetMediaData)(void*, const char*, const char*, const char*, const char*, int, void*) = nullptr;
    void* (*NewSlice)() = nullptr;
    void (*FreeSlice)(void*) = nullptr;
    char* (*GetContentFromSlice)(void*) = nullptr;
    int (*GetSliceLen)(void*) = nullptr;
    void* (*NewMediaData)() = nullptr;
    void (*FreeMediaData)(void*) = nullptr;
    char* (*GetOutIndexBuf)(void*) = nullptr;
    char* (*GetData)(void*) = nullptr;
    int (*GetIndexLen)(void*) = nullptr;
    int (*GetDataLen)(void*) = nullptr;
    int (*IsMediaDataFinish)(void*) = nullptr;
};

std::string finance_sdk_error(int code)
{
    static constexpr std::array<const char*, 12> meanings{
        "参数错误 (bad parameter)",        "网络错误 (network error)",          "数据解析失败 (cannot parse data)",
        "系统失败 (system failure)",       "密钥错误导致加密失败 (wrong key)",   "fileid错误 (bad sdkfileid)",
        "解密失败 (decryption failed)",    "找不到消息加密版本的私钥 (no private key for this publickey_ver)",
        "解析encrypt_key出错 (bad encrypt_key)", "ip非法 (IP not allowed)",  "数据过期 (data expired)",
        "证书错误 (certificate error)"};
    if (code >= 10000 && code <= 10011) return std::to_string(code) + " " + meanings[static_cast<std::size_t>(code - 10000)];
    return std::to_string(code) + " (undocumented)";
}

namespace {

template <class F>
bool resolve(void* handle, const char* name, F& out, std::string& missing)
{
    void* p = ::dlsym(handle, name);
    if (!p) {
        missing += (missing.empty() ? "" : ", ") + std::string(name);
        return false;
    }
    out = reinterpret_cast<F>(p);
    return true;
}

// A Slice_t or MediaData_t of the SDK, freed whatever happens.
class Owned {
public:
    Owned(void* p, void (*free)(void*)) : p_(p), free_(free) {}
    ~Owned()
    {
        if (p_) free_(p_);
    }
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    [[nodiscard]] void* get() const { return p_; }

private:
    void* p_;
    void (*free_)(void*);
};

} // namespace

core::Result<std::unique_ptr<FinanceSdk>> FinanceSdk::load(const std::string& library)
{
    void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* why = ::dlerror();
        return core::make_error("archive_sdk_missing", "cannot load the session-archive SDK " + library + ": " + (why ? why : "unknown error") +
                                                         " (download libWeWorkFinanceSdk_C.so from WeCom's admin console, see README)");
    }
    auto api = std::make_unique<Api>();
    std::string missing;
    resolve(handle, "NewSdk", api->NewSdk, missing);
    resolve(handle, "Init", api->Init, missing);
    resolve(handle, "DestroySdk", api->DestroySdk, missing);
    resolve(handle, "GetChatData", api->GetChatData, missing);
    resolve(handle, "DecryptData", api->DecryptData, missing);
    resolve(handle, "GetMediaData", api->GetMediaData, missing);
    resolve(handle, "NewSlice", api->NewSlice, missing);
    resolve(handle, "FreeSlice", api->FreeSlice, missing);
    resolve(handle, "GetContentFromSlice", api->GetContentFromSlice, missing);
    resolve(handle, "GetSliceLen", api->GetSliceLen, missing);
    resolve(handle, "NewMediaData", api->NewMediaData, missing);
    resolve(handle, "FreeMediaData", api->FreeMediaData, missing);
    resolve(handle, "GetOutIndexBuf", api->GetOutIndexBuf, missing);
    resolve(handle, "GetData", api->GetData, missing);
    resolve(handle, "GetIndexLen", api->GetIndexLen, missing);
    resolve(handle, "GetDataLen", api->GetDataLen, missing);
    resolve(handle, "IsMediaDataFinish", api->IsMediaDataFinish, missing);
    if (!missing.empty()) {
        ::dlclose(handle);
        return core::make_error("archive_sdk_incomplete", library + " lacks " + missing + ": not the session-archive C SDK?");
    }
    std::unique_ptr<FinanceSdk> sdk(new FinanceSdk());
    sdk->handle_ = handle;
    sdk->api_ = std::move(api);
    return sdk;
}

FinanceSdk::~FinanceSdk()
{
    if (sdk_) api_->DestroySdk(sdk_);
    if (handle_) ::dlclose(handle_);
}

core::Status FinanceSdk::init(const std::string& corp_id, const core::Secret& secret)
{
    if (!sdk_) sdk_ = api_->NewSdk();
    if (!sdk_) return core::make_error("archive_sdk_init", "NewSdk returned nothing");
    const int rc = api_->Init(sdk_, corp_id.c_str(), std::string(secret.reveal()).c_str());
    if (rc != 0) return core::make_error("archive_sdk_init", "Init failed: " + finance_sdk_error(rc) + " (check the corp id and the archive Secret)");
    return core::Ok{};
}

core::Result<std::string> FinanceSdk::chat_data(std::uint64_t seq, unsigned limit, int timeout_s)
{
    Owned slice(api_->NewSlice(), api_->FreeSlice);
    const int rc = api_->GetChatData(sdk_, seq, limit, "", "", timeout_s, slice.get());
    if (rc != 0) return core::make_error("archive_" + std::to_string(rc), "GetChatData failed: " + finance_sdk_error(rc));
    const char* p = api_->GetContentFromSlice(slice.get());
    return std::string(p ? p : "", p ? static_cast<std::size_t>(api_->GetSliceLen(slice.get())) : 0);
}

core::Result<std::string> FinanceSdk::decrypt(const std::string& random_key, const std::string& encrypt_chat_msg)
{
    Owned slice(api_->NewSlice(), api_->FreeSlice);
    const int rc = api_->DecryptData(random_key.c_str(), encrypt_chat_msg.c_str(), slice.get());
    if (rc != 0) return core::make_error("archive_" + std::to_string(rc), "DecryptData failed: " + finance_sdk_error(rc));
    const char* p = api_->GetContentFromSlice(slice.get());
    return std::string(p ? p : "", p ? static_cast<std::size_t>(api_->GetSliceLen(slice.get())) : 0);
}

core::Result<FinanceSdk::Chunk> FinanceSdk::media_chunk(const std::string& sdkfileid, const std::string& index, int timeout_s)
{
    Owned media(api_->NewMediaData(), api_->FreeMediaData);
    const int rc = api_->GetMediaData(sdk_, index.c_str(), sdkfileid.c_str(), "", "", timeout_s, media.get());
    if (rc != 0) return core::make_error("archive_" + std::to_string(rc), "GetMediaData failed: " + finance_sdk_error(rc));
    Chunk c;
    const char* data = api_->GetData(media.get());
    const char* next = api_->GetOutIndexBuf(media.get());
    c.data.assign(data ? data : "", data ? static_cast<std::size_t>(api_->GetDataLen(media.get())) : 0);
    c.next_index.assign(next ? next : "", next ? static_cast<std::size_t>(api_->GetIndexLen(media.get())) : 0);
    c.finished = api_->IsMediaDataFinish(media.get()) != 0;
    return c;
}

core::Result<std::string> FinanceSdk::media(const std::string& sdkfileid, std::size_t max_bytes, int timeout_s)
{
    std::string out;
    std::string index;
    for (int chunks = 0;; ++chunks) {
        auto c = media_chunk(sdkfileid, index, timeout_s);
        if (!c) return c.error();
        out += c->data;
        if (out.size() > max_bytes) return core::make_error("media_too_large", "the file is larger than " + std::to_string(max_bytes) + " bytes");
        if (c->finished) return out;
        if (c->next_index.empty() || c->next_index == index || chunks > 100'000) {
            return core::make_error("archive_media_stuck", "GetMediaData made no progress (same index twice)");
        }
        index = std::move(c->next_index);
    }
}

} // namespace qunbot::wecom
