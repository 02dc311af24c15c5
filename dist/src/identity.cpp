#include "dist/identity.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace beamlink::dist {

std::string default_cookie_file() {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.erlang.cookie";
}

Result<Cookie> load_cookie(const std::string& env_value, const std::string& file,
                           bool allow_insecure) {
  if (!env_value.empty()) return Cookie{env_value, "ERLANG_COOKIE", {}};
  std::string path = file.empty() ? default_cookie_file() : file;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return posix_error(Errc::not_found,
                       "no cookie: ERLANG_COOKIE is not set and " + path + " cannot be read (" +
                           std::strerror(errno) +
                           ") — set ERLANG_COOKIE or pass --cookie-file with the cluster's cookie",
                       errno);
  std::string warning;
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warning = "cookie file " + path + " is accessible by others (mode " + mode +
              ") — run `chmod 400 " + path + "`";
    if (!allow_insecure) return make_error(Errc::insecure, warning);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return posix_error(Errc::io_error,
                       "cannot open cookie file " + path + ": " + std::strerror(errno), errno);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string value = ss.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ' ||
                            value.back() == '\t'))
    value.pop_back();
  if (value.empty()) return make_error(Errc::invalid_argument, "cookie file " + path + " is empty");
  return Cookie{value, path, warning};
}

std::string first_non_loopback_ipv4() {
  ifaddrs* list = nullptr;
  std::string out = "127.0.0.1";
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
    if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) continue;
    char buf[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf)) {
      out = buf;
      break;
    }
  }
  freeifaddrs(list);
  return out;
}

std::string cookie_fingerprint(const std::string& cookie) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : cookie) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 8);
}

}  // namespace beamlink::dist
