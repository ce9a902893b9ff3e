#pragma once
// The wire form of the watchdogs' questions and answers (comm/watchdog_channel.h carries them): JSON text, so that a
// message is self-describing and its size is whatever the communicator's member list needs.

#include <cstdint>
#include <string>

#include "comm/watchdog_answer.h"

namespace dtrain::comm {

// "What have you done on communicator `comm`?", with point-to-point counts towards member `about`. `qid` numbers the
// asker's questions, so that a late answer to an earlier one is told apart.
struct WatchdogQuestion {
  std::uint64_t qid = 0;
  std::uint64_t comm = 0;
  int about = -1;
};

struct WatchdogReply {
  std::uint64_t qid = 0;  // the question's
  Answer answer;
};

std::string encode(const WatchdogQuestion& question);
std::string encode(const WatchdogReply& reply);
WatchdogQuestion decode_question(const std::string& text);
WatchdogReply decode_reply(const std::string& text);

}  // namespace dtrain::comm
