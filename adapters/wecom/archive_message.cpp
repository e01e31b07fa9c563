#include "adapters/wecom/archive_message.hpp"

#include "adapters/wecom/base64.hpp"

#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <set>

namespace qunbot::wecom {

using nlohmann::json;

core::Result<std::vector<ChatRecord>> parse_chat_data(std::string_view text)
{
    const auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return core::make_error("archive_bad_answer", "GetChatData did not answer a JSON object");
    if (const int code = j.value("errcode", 0); code != 0) {
        return core::make_error("archive_errcode", "GetChatData errcode " + std::to_string(code) + ": " + j.value("errmsg", std::string()));
    }
    std::vector<ChatRecord> out;
    const auto it = j.find("chatdata");
    if (it == j.end() || it->is_null()) return out;
    if (!it->is_array()) return core::make_error("archive_bad_answer", "chatdata is not a list");
    for (const auto& r : *it) {
        if (!r.is_object() || !r.contains("seq") || !r["seq"].is_number_unsigned()) {
            return core::make_error("archive_bad_answer", "a chatdata record without a seq");
        }
        ChatRecord c;
        c.seq = r["seq"].get<std::uint64_t>();
        c.msgid = r.value("msgid", std::string());
        c.publickey_ver = r.value("publickey_ver", 0);
        c.encrypt_random_key = r.value("encrypt_random_key", std::string());
        c.encrypt_chat_msg = r.value("encrypt_chat_msg", std::string());
        out.push_back(std::move(c));
    }
    return out;
}

struct ArchiveKeys::Impl {
    std::map<int, std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>> keys;
};

ArchiveKeys::ArchiveKeys() : impl_(std::make_unique<Impl>()) {}
ArchiveKeys::~ArchiveKeys() = default;
ArchiveKeys::ArchiveKeys(ArchiveKeys&&) noexcept = default;
ArchiveKeys& ArchiveKeys::operator=(ArchiveKeys&&) noexcept = default;

core::Status ArchiveKeys::add(int version, std::string_view pem)
{
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (!key) return core::make_error("archive_key", "private key version " + std::to_string(version) + " is not a PEM RSA private key");
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        return core::make_error("archive_key", "private key version " + std::to_string(version) + " is not an RSA key");
    }
    impl_->keys.insert_or_assign(version, std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>(key, EVP_PKEY_free));
    return core::Ok{};
}

bool ArchiveKeys::has(int version) const { return impl_->keys.contains(version); }

core::Result<std::string> ArchiveKeys::random_key(int version, std::string_view encrypt_random_key) const
{
    auto it = impl_->keys.find(version);
    if (it == impl_->keys.end()) {
        return core::make_error("archive_10007", "no private key for publickey_ver " + std::to_string(version) +
                                                      " (10007 找不到消息加密版本的私钥): add it under archive.private_keys");
    }
    const auto cipher = base64_decode(encrypt_random_key);
    if (!cipher) return core::make_error("archive_10008", "encrypt_random_key is not base64 (10008 解析encrypt_key出错)");
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(it->second.get(), nullptr), EVP_PKEY_CTX_free);
    std::size_t len = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(cipher->data());
    if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_decrypt(ctx.get(), nullptr, &len, in, cipher->size()) != 1) {
        return core::make_error("archive_10008", "cannot RSA-decrypt encrypt_random_key with key version " + std::to_string(version));
    }
    std::string out(len, '\0');
    if (EVP_PKEY_decrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in, cipher->size()) != 1) {
        return core::make_error("archive_10008", "encrypt_random_key does not decrypt with key version " + std::to_string(version) +
                                                      " (a wrong key for that version?)");
    }
    out.resize(len);
    return out;
}

namespace {

std::string str(const json& j, const char* key)
{
    auto it = j.find(key);
    if (it == j.end()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number()) return it->dump();
    return {};
}

const json& object(const json& j, const std::string& key)
{
    static const json empty = json::object();
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : empty;
}

void attr(core::Event& e, const char* name, const std::string& value)
{
    if (!value.empty()) e.attributes.emplace_back(name, value);
}

} // namespace

core::Result<core::Event> map_archive_message(std::string_view plaintext, const ParseContext& ctx)
{
    const auto j = json::parse(plaintext, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return core::make_error("malformed_payload", "an archived message is not a JSON object");
    const auto msgid = str(j, "msgid");
    if (msgid.empty()) return core::make_error("malformed_payload", "an archived message without msgid");
    core::Event e;
    e.platform = "wecom";
    e.app = ctx.app;
    e.tenant = ctx.tenant;
    e.dedup_key = "archive:" + msgid;
    e.message_id = msgid;
    e.payload = std::string(plaintext);
    const auto action = str(j, "action");
    if (action == "switch") {
        // A member switched enterprises on their device: no conversation content.
        e.kind = core::EventKind::unknown;
        e.raw_type = "archive/switch";
        e.actor = str(j, "user");
        if (auto t = j.find("time"); t != j.end() && t->is_number()) e.time = t->get<std::int64_t>() / 1000;
        return e;
    }
    const auto type = str(j, "msgtype");
    e.raw_type = "archive/" + type;
    e.actor = str(j, "from");
    e.group_id = str(j, "roomid"); // empty for 1:1: kept apart from groups
    if (auto t = j.find("msgtime"); t != j.end() && t->is_number()) e.time = t->get<std::int64_t>() / 1000;
    if (auto to = j.find("tolist"); to != j.end() && to->is_array()) {
        std::string list;
        for (const auto& u : *to) {
            if (u.is_string()) list += (list.empty() ? "" : ",") + u.get<std::string>();
        }
        attr(e, "tolist", list);
    }
    const auto& body = object(j, type);
    e.kind = core::EventKind::message;
    e.message_type = type;
    if (type == "revoke") {
        e.kind = core::EventKind::message_recalled;
        e.subject = str(body, "pre_msgid");
        e.message_type.clear();
    } else if (type == "text") {
        e.text = str(body, "content");
    } else if (type == "markdown") {
        e.text = str(body, "content");
    } else if (type == "image" || type == "voice" || type == "video" || type == "emotion" || type == "file") {
        attr(e, "sdkfileid", str(body, "sdkfileid"));
        attr(e, "md5sum", str(body, "md5sum"));
        attr(e, "filesize", str(body, "filesize"));
        if (type == "file") {
            attr(e, "filename", str(body, "filename"));
            attr(e, "fileext", str(body, "fileext"));
            e.text = str(body, "filename");
        }
        if (type == "voice" || type == "video") attr(e, "play_length", str(body, type == "voice" ? "voice_size" : "play_length"));
    } else if (type == "link") {
        attr(e, "title", str(body, "title"));
        attr(e, "url", str(body, "link_url"));
        attr(e, "image_url", str(body, "image_url"));
        e.text = str(body, "title") + " " + str(body, "description") + " " + str(body, "link_url");
    } else if (type == "weapp") {
        attr(e, "title", str(body, "title"));
        attr(e, "username", str(body, "username"));
        attr(e, "displayname", str(body, "displayname"));
        e.text = str(body, "title") + " " + str(body, "description");
    } else if (type == "card") {
        attr(e, "corpname", str(body, "corpname"));
        attr(e, "userid", str(body, "userid"));
    } else if (type == "location") {
        attr(e, "address", str(body, "address"));
        attr(e, "title", str(body, "title"));
        e.text = str(body, "title") + " " + str(body, "address");
    } else if (type == "redpacket" || type == "external_redpacket") {
        attr(e, "type", str(body, "type"));
        attr(e, "totalcnt", str(body, "totalcnt"));
        attr(e, "totalamount", str(body, "totalamount"));
        e.text = str(body, "wish");
    } else if (type == "mixed") {
        std::string text;
        if (auto items = body.find("item"); items != body.end() && items->is_array()) {
            for (const auto& item : *items) {
                if (!item.is_object() || str(item, "type") != "text") continue;
                // Each item's content is itself a JSON string ("{\"content\":\"...\"}").
                const auto inner = json::parse(str(item, "content"), nullptr, false);
                if (inner.is_object()) text += str(inner, "content");
            }
        }
        e.text = std::move(text);
    } else {
        static const std::set<std::string> named{"agree", "disagree", "chatrecord", "todo", "vote", "collect", "meeting", "docmsg",
                                                 "news", "calendar", "meeting_voice_call", "voip_doc_share", "sphfeed", "voiptext",
                                                 "qydiskfile"};
        if (!named.contains(type)) {
            e.message_type = "other";
            attr(e, "type", type);
        }
    }
    return e;
}

} // namespace qunbot::wecom
