// recforge/interrupt.hpp — stopping a long kernel early (Ctrl-C) without Python in the core.
//
// The caller of a kernel (the Python binding) installs a StopToken on its thread for the length of
// the call, with a poll function: "should this call stop?" (the binding checks Python's signals
// there). Kernels ask `requested()` between blocks of work: parallel_for does it before each
// iteration, a loop that runs long inside one iteration asks itself. Only the installing thread
// runs the poll, at most every kPollInterval; other threads read the answer (an atomic flag).
// Once a stop is requested the kernel skips its remaining blocks and, outside any parallel region,
// throws Interrupted (throw_if_stopped). A kernel run without a token never stops early.
#pragma once

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace recforge {

// Thrown by a kernel whose caller asked it to stop; the binding turns it into KeyboardInterrupt.
struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted") {}
};

class StopToken {
public:
    using Poll = bool (*)(void* context);  // true: stop; must not throw (nullptr: never polls)
    static constexpr std::chrono::milliseconds kPollInterval{50};

    // Installs the token as the calling thread's current one until it is destroyed.
    StopToken(Poll poll, void* context)
        : poll_(poll), context_(context), owner_(std::this_thread::get_id()), previous_(slot()) {
        slot() = this;
    }
    ~StopToken() { slot() = previous_; }
    StopToken(const StopToken&) = delete;
    StopToken& operator=(const StopToken&) = delete;

    // True once a stop was requested. Any thread may ask; only the installing thread polls.
    bool requested() noexcept {
        if (stopped()) return true;
        if (poll_ == nullptr || std::this_thread::get_id() != owner_) return false;
        const auto now = std::chrono::steady_clock::now();
        if (now < next_poll_) return false;
        next_poll_ = now + kPollInterval;
        if (poll_(context_)) stop_.store(true, std::memory_order_relaxed);
        return stopped();
    }
    // Whether a stop was requested, without polling (every thread of a team sees the same answer
    // once they have passed a barrier after the owner's last poll).
    bool stopped() const noexcept { return stop_.load(std::memory_order_relaxed); }

    // The calling thread's token, or nullptr: kernels take it before a parallel region and pass
    // it to their threads (a worker thread has no token of its own).
    static StopToken* current() noexcept { return slot(); }

private:
    static StopToken*& slot() noexcept {
        static thread_local StopToken* token = nullptr;
        return token;
    }

    std::atomic<bool> stop_{false};
    Poll poll_;
    void* context_;
    std::thread::id owner_;
    std::chrono::steady_clock::time_point next_poll_{};
    StopToken* previous_;
};

inline bool stop_requested(StopToken* token) noexcept { return token != nullptr && token->requested(); }

// Call outside parallel regions: throws Interrupted when a stop was requested.
inline void throw_if_stopped(StopToken* token) {
    if (stop_requested(token)) throw Interrupted();
}

}  // namespace recforge
