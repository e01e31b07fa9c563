#pragma once
/// \file
/// Test helpers: temporary directories, configuration files, and child processes (the real
/// `qunbot` binary) with waits that have deadlines instead of sleeps.

#include <chrono>
#include <filesystem>
#include <memory>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace qunbot::bot {
class Service;
}

namespace qunbot::test {

/// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

void write_file(const std::string& path, const std::string& text);
[[nodiscard]] std::string read_file(const std::string& path);

/// The published test app (protocol notes §1.10, vectors A1/A2/C1).
inline constexpr const char* vector_token = "QDG6eK";
inline constexpr const char* vector_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
inline constexpr const char* vector_corp = "wx5823bf96d3bd56c7";

/// Writes a configuration for one app "t" at /cb with the given credentials, listening on
/// 127.0.0.1:0, and returns its path. `extra` is spliced into the top-level object.
std::string write_test_config(const TempDir& dir, const std::string& token = vector_token,
                              const std::string& key = vector_key, const std::string& corp = vector_corp,
                              const std::string& extra = "");

/// Loads `config_path`, resolves its secrets, creates the in-process service and starts its
/// threads (without signal handling). Sets `db_path` to the configured database.
std::unique_ptr<bot::Service> start_service(const std::string& config_path, std::string& db_path);

/// A child process with its stdout and stderr captured.
class Child {
public:
    explicit Child(std::vector<std::string> argv);
    ~Child(); ///< SIGKILLs and reaps the child if it is still running
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    /// Reads stdout until a line containing `needle` arrives; returns that line, or nullopt at the deadline or EOF.
    std::optional<std::string> wait_for_line(const std::string& needle, std::chrono::milliseconds deadline);
    /// Sends a signal.
    void signal(int sig);
    /// Waits for exit; returns the exit status (128+signal for a signal), or nullopt at the deadline.
    std::optional<int> wait_exit(std::chrono::milliseconds deadline);
    /// Everything read from stdout so far, and all of stderr (stderr is read at exit).
    [[nodiscard]] std::string out() const { return out_; }
    [[nodiscard]] std::string err();

private:
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int out_fd_ = -1;
    int err_fd_ = -1;
    std::string out_;
    std::string pending_;
    std::string err_;
    std::optional<int> status_;
};

/// Local time in China (UTC+8, no DST) as epoch milliseconds, for tests on an injected clock.
[[nodiscard]] std::int64_t cst(int y, unsigned mo, unsigned d, int h, int mi, int s = 0);
/// A WeChat customer's external userid of the real shape ("wm" + 30 characters), numbered.
[[nodiscard]] std::string customer_id(int n);
/// Polls `cond` until it holds or `deadline` passes (for state another thread or process
/// writes, which has nothing to wait on from outside); returns its last value.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline = std::chrono::seconds(30));

/// A grey image of `text` as a QR code (libqrencode; 4 pixels per module, a 4-module quiet
/// zone), `side` pixels square, and the same pixels as a PNG file's bytes.
[[nodiscard]] std::vector<unsigned char> qr_pixels(const std::string& text, int& side);
[[nodiscard]] std::string png_of(const std::vector<unsigned char>& grey, int side);

/// Starts `qunbot serve --config CONFIG [extra...]` and waits for its "listening on" line.
/// Returns the port; the child is in `child`.
std::uint16_t start_server(std::optional<Child>& child, const std::string& config, std::vector<std::string> extra = {});

} // namespace qunbot::test
