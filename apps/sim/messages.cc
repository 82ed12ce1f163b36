#include "messages.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <functional>
#include <optional>
#include <string_view>

namespace sim {

namespace {

// The event stream renders every message a call publishes, so its lines are written straight
// into one string: building an nlohmann::json object first (a std::map, a string per key and
// value) cost several times the rest of the call's work. The keys are in the order
// nlohmann-json writes them (sorted), so a line reads as before.
class JsonLine {
 public:
  JsonLine() { out_.resize(256); }

  JsonLine& Text(const char* key, std::string_view value) {
    Key(key);
    // At most six characters for each one of `value` ("\\u001f"), and the quotes.
    char* p = Room(value.size() * 6 + 2);
    *p++ = '"';
    for (const char c : value) {
      if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) {
        *p++ = c;
      } else if (c == '"' || c == '\\') {
        *p++ = '\\';
        *p++ = c;
      } else if (const char shorthand = Shorthand(c); shorthand != 0) {
        *p++ = '\\';
        *p++ = shorthand;
      } else {
        constexpr char kHex[] = "0123456789abcdef";
        const auto code = static_cast<unsigned char>(c);
        p = std::copy_n("\\u00", 4, p);
        *p++ = kHex[code >> 4];
        *p++ = kHex[code & 0xf];
      }
    }
    *p++ = '"';
    used_ = static_cast<std::size_t>(p - out_.data());
    return *this;
  }
  JsonLine& Device(const char* key, std::uint32_t device) {
    char name[32];
    return Text(key, std::string_view(name, WriteDeviceName(device, name)));
  }
  template <class Int>
  JsonLine& Number(const char* key, Int value) {
    Key(key);
    char* p = Room(24);
    used_ = static_cast<std::size_t>(std::to_chars(p, p + 24, value).ptr - out_.data());
    return *this;
  }
  std::string Done() {
    *Room(1) = '}';
    out_.resize(used_ + 1);
    return std::move(out_);
  }

  // Writes "PJSIP/dev-0007" into `out` (at least 32 bytes); returns its length.
  static std::size_t WriteDeviceName(std::uint32_t device, char* out) {
    constexpr std::string_view kPrefix = "PJSIP/dev-";
    std::copy(kPrefix.begin(), kPrefix.end(), out);
    char digits[16];
    const std::size_t n = static_cast<std::size_t>(
        std::to_chars(digits, digits + sizeof digits, device).ptr - digits);
    std::size_t at = kPrefix.size();
    for (std::size_t pad = n; pad < 4; ++pad) out[at++] = '0';
    std::copy(digits, digits + n, out + at);
    return at + n;
  }

 private:
  // The letter of the short escape for `c` ('n' for a newline), 0 if it has none.
  static char Shorthand(char c) {
    switch (c) {
      case '\b':
        return 'b';
      case '\f':
        return 'f';
      case '\n':
        return 'n';
      case '\r':
        return 'r';
      case '\t':
        return 't';
      default:
        return 0;
    }
  }
  // Where to write `n` more characters.
  char* Room(std::size_t n) {
    if (used_ + n > out_.size()) out_.resize(std::max(out_.size() * 2, used_ + n));
    return out_.data() + used_;
  }
  void Key(std::string_view key) {
    char* p = Room(key.size() + 4);
    *p++ = used_ == 0 ? '{' : ',';
    *p++ = '"';
    p = std::copy(key.begin(), key.end(), p);
    *p++ = '"';
    *p++ = ':';
    used_ = static_cast<std::size_t>(p - out_.data());
  }

  // Written up to used_; sized ahead of the writes.
  std::string out_;
  std::size_t used_ = 0;
};

template <class T, class Render>
std::function<std::optional<std::string>(const plexus::Message&)> Formatter(Render render) {
  return [render](const plexus::Message& m) -> std::optional<std::string> {
    const T* value = m.As<T>();
    if (value == nullptr) return std::nullopt;
    return render(*value);
  };
}

}  // namespace

std::string DeviceName(std::uint32_t device) {
  char name[32];
  return std::string(name, JsonLine::WriteDeviceName(device, name));
}

const plexus::TypedMessageType<CallSnapshot>& CallSnapshotType() {
  static const auto type = plexus::TypedMessageType<CallSnapshot>::Create(
      "CallSnapshot", {.to_json = Formatter<CallSnapshot>([](const CallSnapshot& s) {
                         return JsonLine()
                             .Number("call", s.call_id)
                             .Device("device", s.device)
                             .Text("state", kCallStateNames[static_cast<std::size_t>(s.state)])
                             .Text("type", "CallSnapshot")
                             .Done();
                       })});
  return type;
}

const plexus::TypedMessageType<CallEvent>& CallEventType() {
  static const auto type = plexus::TypedMessageType<CallEvent>::Create(
      "CallEvent", {.to_json = Formatter<CallEvent>([](const CallEvent& e) {
                      return JsonLine()
                          .Number("call", e.call_id)
                          .Text("detail", e.detail)
                          .Device("device", e.device)
                          .Text("type", kEventKindNames[static_cast<std::size_t>(e.kind)])
                          .Done();
                    })});
  return type;
}

const plexus::TypedMessageType<CallEnded>& CallEndedType() {
  static const auto type = plexus::TypedMessageType<CallEnded>::Create(
      "CallEnded", {.to_json = Formatter<CallEnded>([](const CallEnded& c) {
                      return JsonLine()
                          .Number("answer_us", c.answer_us)
                          .Number("call", c.call_id)
                          .Text("cause", c.cause)
                          .Device("device", c.device)
                          .Text("disposition", c.disposition)
                          .Number("end_us", c.end_us)
                          .Number("refreshes", c.refreshes)
                          .Number("start_us", c.start_us)
                          .Text("type", "CallEnded")
                          .Done();
                    })});
  return type;
}

std::string CallIdOf(const plexus::Message& message) {
  const CallSnapshot* s = CallSnapshotType().Get(message);
  return s != nullptr ? std::to_string(s->call_id) : std::string();
}

}  // namespace sim
