#include "support/support.hpp"

#include "bot/config.hpp"
#include "bot/service.hpp"

#include <catch2/catch.hpp>
#include <png.h>
#include <qrencode.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <thread>
#include <poll.h>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace qunbot::test {

TempDir::TempDir()
{
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        auto p = std::filesystem::temp_directory_path() / ("qunbot-test-" + std::to_string(rd()));
        if (std::filesystem::create_directory(p)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string write_test_config(const TempDir& dir, const std::string& token, const std::string& key, const std::string& corp,
                              const std::string& extra)
{
    const auto secrets = dir.file("t.secrets.json");
    write_file(secrets, "{\"token\":\"" + token + "\",\"encoding_aes_key\":\"" + key + "\"}");
    const auto path = dir.file("qunbot.json");
    // Unless the test brings its own, an empty rule directory of its own (not the repository's).
    std::string rules;
    if (extra.find("\"rules\"") == std::string::npos) {
        std::filesystem::create_directories(dir.path() / "rules");
        rules = "\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},";
    }
    write_file(path, "{\"listen\":{\"address\":\"127.0.0.1\",\"port\":0},\"threads\":2,\"database\":\"" + dir.file("q.db") +
                         "\",\"log_level\":\"info\"," + rules + extra +
                         "\"apps\":[{\"name\":\"t\",\"path\":\"/cb\",\"corp_id\":\"" + corp + "\",\"secrets_file\":\"" +
                         secrets + "\"}]}");
    return path;
}

std::unique_ptr<bot::Service> start_service(const std::string& config_path, std::string& db_path)
{
    auto config = bot::load_config(config_path);
    REQUIRE(config.ok());
    REQUIRE(bot::resolve_secrets(*config).ok());
    db_path = config->database;
    auto s = bot::Service::create(*config);
    REQUIRE(s.ok());
    auto service = std::move(*s);
    service->start(false);
    return service;
}

namespace {

void make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
}

} // namespace

Child::Child(std::vector<std::string> argv)
{
    int out[2], err[2];
    make_pipe(out);
    make_pipe(err);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    ::close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) throw std::runtime_error(std::string("pidfd_open: ") + std::strerror(errno));
}

Child::~Child()
{
    if (!status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
    }
    for (int fd : {pidfd_, out_fd_, err_fd_})
        if (fd >= 0) ::close(fd);
}

std::optional<std::string> Child::wait_for_line(const std::string& needle, std::chrono::milliseconds deadline)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            if (line.find(needle) != std::string::npos) return line;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd p{out_fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        char buf[4096];
        const auto n = ::read(out_fd_, buf, sizeof buf);
        if (n <= 0) return std::nullopt;
        out_.append(buf, static_cast<std::size_t>(n));
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

void Child::signal(int sig) { ::kill(pid_, sig); }

std::optional<int> Child::wait_exit(std::chrono::milliseconds deadline)
{
    if (status_) return status_;
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(deadline.count())) <= 0) return std::nullopt;
    int st = 0;
    if (::waitpid(pid_, &st, 0) != pid_) return std::nullopt;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
}

std::string Child::err()
{
    if (err_fd_ >= 0) {
        // Non-blocking drain: the child may still be running.
        const int flags = ::fcntl(err_fd_, F_GETFL);
        ::fcntl(err_fd_, F_SETFL, flags | O_NONBLOCK);
        char buf[4096];
        for (;;) {
            const auto n = ::read(err_fd_, buf, sizeof buf);
            if (n <= 0) break;
            err_.append(buf, static_cast<std::size_t>(n));
        }
    }
    return err_;
}

std::uint16_t start_server(std::optional<Child>& child, const std::string& config, std::vector<std::string> extra)
{
    std::vector<std::string> argv{QUNBOT_BINARY, "serve", "--config", config};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child.emplace(argv);
    const auto line = child->wait_for_line("qunbot listening on http://", std::chrono::seconds(20));
    if (!line) {
        child->wait_exit(std::chrono::seconds(2));
        FAIL("qunbot serve did not start; stderr:\n" << child->err());
    }
    const auto host = line->find("http://") + 7;
    const auto colon = line->find(':', host);
    return static_cast<std::uint16_t>(std::stoi(line->substr(colon + 1)));
}

std::int64_t cst(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
    using namespace std::chrono;
    const sys_days date = year_month_day{year{y}, month{mo}, day{d}};
    return duration_cast<milliseconds>((date + hours{h - 8} + minutes{mi} + seconds{s}).time_since_epoch()).count();
}

std::string customer_id(int n)
{
    const auto s = std::to_string(n);
    return "wm" + std::string(30 - std::min<std::size_t>(30, s.size()), '0') + s;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return cond();
}

std::vector<unsigned char> qr_pixels(const std::string& text, int& side)
{
    std::unique_ptr<QRcode, decltype(&QRcode_free)> qr(QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1), QRcode_free);
    if (!qr) throw std::runtime_error("libqrencode could not encode the text");
    const int scale = 4, quiet = 4;
    side = (qr->width + 2 * quiet) * scale;
    std::vector<unsigned char> px(static_cast<std::size_t>(side * side), 255);
    for (int y = 0; y < qr->width; ++y) {
        for (int x = 0; x < qr->width; ++x) {
            if (!(qr->data[y * qr->width + x] & 1)) continue;
            for (int dy = 0; dy < scale; ++dy) {
                for (int dx = 0; dx < scale; ++dx) px[static_cast<std::size_t>(((y + quiet) * scale + dy) * side + (x + quiet) * scale + dx)] = 0;
            }
        }
    }
    return px;
}

std::string png_of(const std::vector<unsigned char>& grey, int side)
{
    png_image img;
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = static_cast<png_uint_32>(side);
    img.height = static_cast<png_uint_32>(side);
    img.format = PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&img, nullptr, &size, 0, grey.data(), 0, nullptr)) throw std::runtime_error("libpng: cannot size the PNG");
    std::string out(size, '\0');
    if (!png_image_write_to_memory(&img, out.data(), &size, 0, grey.data(), 0, nullptr)) throw std::runtime_error("libpng: cannot write the PNG");
    out.resize(size);
    return out;
}

} // namespace qunbot::test
