#include "fakes/test_ca.hpp"

#include <boost/asio/ip/address.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>
#include <stdexcept>

namespace qunbot::fakes {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
    void operator()(T* p) const noexcept { F(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;

void check(bool ok, const char* what)
{
    if (!ok) throw std::runtime_error(std::string("test PKI: ") + what);
}

Key make_key()
{
    Key k(EVP_EC_gen("P-256"));
    check(k != nullptr, "EC key generation");
    return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    check(ext != nullptr, "extension");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

Cert make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, long serial)
{
    Cert c(X509_new());
    check(c != nullptr, "X509_new");
    X509_set_version(c.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c.get()), 7 * 24 * 3600);
    X509_set_pubkey(c.get(), key);
    X509_NAME* name = X509_get_subject_name(c.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
    return c;
}

std::string pem_of(X509* cert)
{
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

std::string pem_of(EVP_PKEY* key)
{
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

} // namespace

TestPki make_test_pki(const std::vector<std::string>& names)
{
    auto ca_key = make_key();
    auto ca = make_cert(ca_key.get(), "qunbot test CA", nullptr, 1);
    add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
    check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()) > 0, "CA signature");

    auto key = make_key();
    auto cert = make_cert(key.get(), names.empty() ? "localhost" : names.front(), ca.get(), 2);
    std::string san;
    for (const auto& n : names) {
        boost::system::error_code ec;
        (void)boost::asio::ip::make_address(n, ec);
        san += (san.empty() ? "" : ",") + std::string(ec ? "DNS:" : "IP:") + n;
    }
    add_ext(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth");
    add_ext(cert.get(), ca.get(), NID_subject_alt_name, san);
    check(X509_sign(cert.get(), ca_key.get(), EVP_sha256()) > 0, "server signature");

    auto client_key = make_key();
    auto client = make_cert(client_key.get(), "qunbot test merchant", ca.get(), 3);
    add_ext(client.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(client.get(), ca.get(), NID_ext_key_usage, "clientAuth");
    check(X509_sign(client.get(), ca_key.get(), EVP_sha256()) > 0, "client signature");
    return TestPki{pem_of(ca.get()), pem_of(cert.get()), pem_of(key.get()), pem_of(client.get()), pem_of(client_key.get())};
}

const TestPki& loopback_pki()
{
    static const auto p = make_test_pki({"localhost", "127.0.0.1"});
    return p;
}

void write_pem(const std::string& path, const std::string& pem)
{
    std::ofstream out(path, std::ios::trunc);
    out << pem;
    check(static_cast<bool>(out), "cannot write PEM file");
}

} // namespace qunbot::fakes
