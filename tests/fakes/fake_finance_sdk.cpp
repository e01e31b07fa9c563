// A stand-in for WeCom's libWeWorkFinanceSdk_C.so with the same C ABI (the official header's
// functions and structs), built by the test suite as a shared library and loaded by qunbot
// with dlopen exactly as the real one. It serves the records of a JSON file named by the
// environment variable QUNBOT_FAKE_FINANCE_SDK (re-read on every call, so a test can add
// records while qunbot runs):
//   {"corpid": ..., "secret": ..., "records": [{seq, msgid, publickey_ver, encrypt_random_key,
//    encrypt_chat_msg}], "media": {"<sdkfileid>": "<base64>"}, "chunk_bytes": N, "delay_ms": N}
// Since the real DecryptData algorithm is not public (notes §7.10), the fake's own is:
// encrypt_chat_msg = base64(random_key + "|" + message); DecryptData fails (10006) unless the
// key it is given is that random key, which qunbot only has if its RSA step was right.
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

nlohmann::json load()
{
    const char* path = std::getenv("QUNBOT_FAKE_FINANCE_SDK");
    if (!path) return nlohmann::json();
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return nlohmann::json::parse(ss.str(), nullptr, false);
}

std::string unbase64(const std::string& s)
{
    std::string out(s.size() / 4 * 3 + 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                                  static_cast<int>(s.size()));
    if (n < 0) return {};
    std::size_t len = static_cast<std::size_t>(n);
    if (!s.empty() && s.back() == '=') --len;
    if (s.size() > 1 && s[s.size() - 2] == '=') --len;
    out.resize(len);
    return out;
}

char* copy(const std::string& s)
{
    char* p = static_cast<char*>(std::malloc(s.size() + 1));
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

} // namespace

extern "C" {

typedef struct WeWorkFinanceSdk {
    std::string corpid;
    bool ready = false;
} WeWorkFinanceSdk_t;

typedef struct Slice_t {
    char* buf;
    int len;
} Slice_t;

typedef struct MediaData {
    char* outindexbuf;
    int out_len;
    char* data;
    int data_len;
    int is_finish;
} MediaData_t;

__attribute__((visibility("default"))) WeWorkFinanceSdk_t* NewSdk() { return new WeWorkFinanceSdk_t(); }

__attribute__((visibility("default"))) int Init(WeWorkFinanceSdk_t* sdk, const char* corpid, const char* secret)
{
    const auto d = load();
    if (!d.is_object()) return 10000;
    if (d.value("corpid", std::string()) != corpid || d.value("secret", std::string()) != secret) return 10000;
    sdk->corpid = corpid;
    sdk->ready = true;
    return 0;
}

__attribute__((visibility("default"))) void DestroySdk(WeWorkFinanceSdk_t* sdk) { delete sdk; }

__attribute__((visibility("default"))) int GetChatData(WeWorkFinanceSdk_t* sdk, unsigned long long seq, unsigned int limit, const char*,
                                                       const char*, int, Slice_t* out)
{
    if (!sdk || !sdk->ready) return 10000;
    if (limit > 1000) return 10000;
    const auto d = load();
    if (const int delay = d.value("delay_ms", 0); delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    nlohmann::json answer{{"errcode", 0}, {"errmsg", "ok"}, {"chatdata", nlohmann::json::array()}};
    for (const auto& r : d.value("records", nlohmann::json::array())) {
        if (r.value("seq", 0ull) <= seq) continue;
        if (answer["chatdata"].size() >= limit) break;
        answer["chatdata"].push_back(r);
    }
    const auto text = answer.dump();
    out->buf = copy(text);
    out->len = static_cast<int>(text.size());
    return 0;
}

__attribute__((visibility("default"))) int DecryptData(const char* encrypt_key, const char* encrypt_msg, Slice_t* msg)
{
    const auto plain = unbase64(encrypt_msg);
    const std::string prefix = std::string(encrypt_key) + "|";
    if (plain.compare(0, prefix.size(), prefix) != 0) return 10006;
    const auto body = plain.substr(prefix.size());
    msg->buf = copy(body);
    msg->len = static_cast<int>(body.size());
    return 0;
}

__attribute__((visibility("default"))) int GetMediaData(WeWorkFinanceSdk_t* sdk, const char* indexbuf, const char* sdkFileid, const char*,
                                                        const char*, int, MediaData_t* media)
{
    if (!sdk || !sdk->ready) return 10000;
    const auto d = load();
    const auto files = d.value("media", nlohmann::json::object());
    if (!files.contains(sdkFileid)) return 10005;
    const auto bytes = unbase64(files[sdkFileid].get<std::string>());
    const std::size_t chunk = d.value("chunk_bytes", 512 * 1024);
    const std::size_t from = (indexbuf && *indexbuf) ? std::stoull(indexbuf) : 0;
    if (from > bytes.size()) return 10000;
    const auto part = bytes.substr(from, chunk);
    const auto next = std::to_string(from + part.size());
    media->data = copy(part);
    media->data_len = static_cast<int>(part.size());
    media->outindexbuf = copy(next);
    media->out_len = static_cast<int>(next.size());
    media->is_finish = from + part.size() >= bytes.size() ? 1 : 0;
    return 0;
}

__attribute__((visibility("default"))) Slice_t* NewSlice() { return new Slice_t{nullptr, 0}; }
__attribute__((visibility("default"))) void FreeSlice(Slice_t* s)
{
    if (!s) return;
    std::free(s->buf);
    delete s;
}
__attribute__((visibility("default"))) char* GetContentFromSlice(Slice_t* s) { return s->buf; }
__attribute__((visibility("default"))) int GetSliceLen(Slice_t* s) { return s->len; }
__attribute__((visibility("default"))) MediaData_t* NewMediaData() { return new MediaData_t{nullptr, 0, nullptr, 0, 0}; }
__attribute__((visibility("default"))) void FreeMediaData(MediaData_t* m)
{
    if (!m) return;
    std::free(m->outindexbuf);
    std::free(m->data);
    delete m;
}
__attribute__((visibility("default"))) char* GetOutIndexBuf(MediaData_t* m) { return m->outindexbuf; }
__attribute__((visibility("default"))) char* GetData(MediaData_t* m) { return m->data; }
__attribute__((visibility("default"))) int GetIndexLen(MediaData_t* m) { return m->out_len; }
__attribute__((visibility("default"))) int GetDataLen(MediaData_t* m) { return m->data_len; }
__attribute__((visibility("default"))) int IsMediaDataFinish(MediaData_t* m) { return m->is_finish; }

} // extern "C"
