#include "comm/watchdog_json.h"

#include <nlohmann/json.hpp>

namespace dtrain::comm {

namespace {

nlohmann::json to_json(const BlockedOp& b) {
  return {{"comm", b.comm},
          {"name", b.comm_name},
          {"members", b.members},
          {"rank", b.rank},
          {"type", static_cast<int>(b.op.type)},
          {"seq", b.op.seq},
          {"dtype", static_cast<int>(b.op.dtype)},
          {"count", b.op.count},
          {"op", static_cast<int>(b.op.op)},
          {"peer", b.op.peer},
          {"tag", b.op.tag},
          {"peer_seq", b.op.peer_seq},
          {"for_s", b.for_s}};
}

BlockedOp blocked_from_json(const nlohmann::json& j) {
  BlockedOp b;
  b.comm = j.at("comm").get<std::uint64_t>();
  b.comm_name = j.at("name").get<std::string>();
  b.members = j.at("members").get<std::vector<int>>();
  b.rank = j.at("rank").get<int>();
  b.op.type = static_cast<OpType>(j.at("type").get<int>());
  b.op.seq = j.at("seq").get<std::uint64_t>();
  b.op.dtype = static_cast<DataType>(j.at("dtype").get<int>());
  b.op.count = j.at("count").get<std::size_t>();
  b.op.op = static_cast<ReduceOp>(j.at("op").get<int>());
  b.op.peer = j.at("peer").get<int>();
  b.op.tag = j.at("tag").get<int>();
  b.op.peer_seq = j.at("peer_seq").get<std::uint64_t>();
  b.for_s = j.at("for_s").get<double>();
  return b;
}

}  // namespace

std::string encode(const WatchdogQuestion& question) {
  return nlohmann::json{{"qid", question.qid}, {"comm", question.comm}, {"about", question.about}}.dump();
}

std::string encode(const WatchdogReply& reply) {
  const Answer& a = reply.answer;
  nlohmann::json j = {{"qid", reply.qid},
                      {"member", a.member},
                      {"collectives", a.progress.collectives},
                      {"history", a.progress.history},
                      {"last", a.progress.last_collective},
                      {"sends_to", a.progress.sends_to},
                      {"recvs_from", a.progress.recvs_from}};
  if (a.blocked) j["blocked"] = to_json(*a.blocked);
  return j.dump();
}

WatchdogQuestion decode_question(const std::string& text) {
  const auto j = nlohmann::json::parse(text);
  return {j.at("qid").get<std::uint64_t>(), j.at("comm").get<std::uint64_t>(), j.at("about").get<int>()};
}

WatchdogReply decode_reply(const std::string& text) {
  const auto j = nlohmann::json::parse(text);
  WatchdogReply reply;
  reply.qid = j.at("qid").get<std::uint64_t>();
  Answer& a = reply.answer;
  a.member = j.at("member").get<bool>();
  a.progress.collectives = j.at("collectives").get<std::uint64_t>();
  a.progress.history = j.at("history").get<std::uint64_t>();
  a.progress.last_collective = j.at("last").get<std::string>();
  a.progress.sends_to = j.at("sends_to").get<std::uint64_t>();
  a.progress.recvs_from = j.at("recvs_from").get<std::uint64_t>();
  if (j.contains("blocked")) a.blocked = blocked_from_json(j.at("blocked"));
  return reply;
}

}  // namespace dtrain::comm
