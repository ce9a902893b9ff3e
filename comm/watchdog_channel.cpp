#include "comm/watchdog_channel.h"

#include <fmt/format.h>

#include <thread>

#include "comm/clock.h"
#include "comm/mpi_check.h"
#include "comm/watchdog_json.h"

namespace dtrain::comm {

namespace {

constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;

}  // namespace

WatchdogChannel::WatchdogChannel(MPI_Comm comm, int world_rank, std::chrono::milliseconds answer_within,
                                 LocalAnswer local)
    : comm_(comm), world_rank_(world_rank), answer_within_(answer_within), local_(std::move(local)) {}

WatchdogChannel::~WatchdogChannel() {
  for (auto& send : sends_) MPI_Request_free(&send.request);
  MPI_Comm_free(&comm_);
}

void WatchdogChannel::send_async(int dest, int tag, std::string bytes) {
  PendingSend send{std::make_shared<std::string>(std::move(bytes))};
  DTRAIN_MPI_CHECK(
      MPI_Isend(send.bytes->data(), static_cast<int>(send.bytes->size()), MPI_CHAR, dest, tag, comm_, &send.request),
      fmt::format("watchdog sending to rank {}", dest));
  sends_.push_back(std::move(send));
}

void WatchdogChannel::reap_sends() {
  while (!sends_.empty()) {
    int done = 0;
    DTRAIN_MPI_CHECK(MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE), "watchdog send");
    if (!done) return;
    sends_.pop_front();
  }
}

std::optional<std::string> WatchdogChannel::receive_if_any(int source, int tag, int* from) {
  int flag = 0;
  MPI_Status status;
  DTRAIN_MPI_CHECK(MPI_Iprobe(source, tag, comm_, &flag, &status), "watchdog probing for messages");
  if (!flag) return std::nullopt;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Get_count(&status, MPI_CHAR, &size), "watchdog message size");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  DTRAIN_MPI_CHECK(MPI_Recv(bytes.data(), size, MPI_CHAR, status.MPI_SOURCE, tag, comm_, MPI_STATUS_IGNORE),
                   fmt::format("watchdog receiving from rank {}", status.MPI_SOURCE));
  *from = status.MPI_SOURCE;
  return bytes;
}

void WatchdogChannel::serve() {
  reap_sends();
  int from = -1;
  while (auto bytes = receive_if_any(MPI_ANY_SOURCE, kQueryTag, &from)) {
    const WatchdogQuestion question = decode_question(*bytes);
    send_async(from, kAnswerTag, encode(WatchdogReply{question.qid, local_(question.comm, question.about)}));
  }
}

std::optional<Answer> WatchdogChannel::ask(int world_rank, std::uint64_t comm, int about) {
  if (world_rank == world_rank_) return local_(comm, about);
  const std::uint64_t qid = ++last_qid_;
  send_async(world_rank, kQueryTag, encode(WatchdogQuestion{qid, comm, about}));
  const auto deadline = SteadyClock::now() + answer_within_;
  while (SteadyClock::now() < deadline) {
    int from = -1;
    if (auto bytes = receive_if_any(world_rank, kAnswerTag, &from)) {
      WatchdogReply reply = decode_reply(*bytes);
      if (reply.qid != qid) continue;  // a late answer to an earlier question
      return std::move(reply.answer);
    }
    serve();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::nullopt;
}

}  // namespace dtrain::comm
