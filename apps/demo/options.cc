#include "options.h"

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace demo {

std::optional<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--seconds=")) {
      options.seconds = std::atof(argv[i] + std::strlen("--seconds="));
      if (options.seconds <= 0 || options.seconds > 600) return std::nullopt;
    } else if (arg.starts_with("--paced-seconds=")) {
      options.paced_seconds = std::atof(argv[i] + std::strlen("--paced-seconds="));
      if (options.paced_seconds < 0 || options.paced_seconds > 600) return std::nullopt;
    } else if (arg.starts_with("--producers=")) {
      options.producers = std::atoi(argv[i] + std::strlen("--producers="));
      if (options.producers < 1 || options.producers > kMaxProducers) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

}  // namespace demo
