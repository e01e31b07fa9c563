#pragma once
/// \file
/// A certificate authority made at test time (nothing is checked in): a CA certificate and a
/// server certificate it signs, for loopback TLS fakes that the real client verifies.

#include <string>
#include <vector>

namespace qunbot::fakes {

struct TestPki {
    std::string ca_pem;          ///< the CA certificate (what the client trusts)
    std::string server_cert_pem; ///< server certificate signed by the CA
    std::string server_key_pem;  ///< its private key
    std::string client_cert_pem; ///< a client certificate signed by the CA (CN "qunbot test merchant"), for mutual TLS
    std::string client_key_pem;
};

/// A new CA and a server certificate whose subjectAltName lists `names` (DNS names or IP
/// addresses, e.g. {"localhost", "127.0.0.1"}). Throws on OpenSSL failure.
[[nodiscard]] TestPki make_test_pki(const std::vector<std::string>& names);

/// One PKI for localhost and 127.0.0.1, made once per test process (key generation is slow).
[[nodiscard]] const TestPki& loopback_pki();

/// Writes `pem` to `path` (for the client's ca_file option).
void write_pem(const std::string& path, const std::string& pem);

} // namespace qunbot::fakes
