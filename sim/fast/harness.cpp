// inq-hw compiled simulation harness: a Verilator model driven from C++, no cocotb.
//
// Built by sim/fast/engine.py with `verilator --cc --exe --prefix Vtop` and one of
//   -DINQ_HW_STREAM    the dataflow top (i__payload/i__valid/i__ready, o__...);
//   -DINQ_HW_PE_ARRAY  the programmable PE array (host write port, start/done, read port);
// plus -DINQ_HW_TRACE for the trace-enabled variant (--trace-fst; never the default build).
//
// It reads a plain "key value" configuration (argv[1]) written by engine.py, streams the
// binary input file, and writes every output beat with its cycle to the binary output file
// and a "key value" result. The stream protocol matches sim/tb_dataflow.py: each cycle a
// beat is offered unless the seeded generator says idle (a beat once offered stays until
// taken) and o__ready is raised unless it says stall; the transfers of the rising edge
// that ends the cycle are recorded from the values the logic settled to. The first
// `timing_images` results come without gaps or stalls, to measure latency and interval.

#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#ifdef INQ_HW_TRACE
#include "verilated_fst_c.h"
#endif

namespace {

using Config = std::map<std::string, std::string>;

Config read_config(const char* path) {
    Config cfg;
    std::ifstream in(path);
    std::string key, value;
    while (in >> key >> value) cfg[key] = value;
    return cfg;
}

uint64_t number(const Config& cfg, const char* key) {
    auto it = cfg.find(key);
    if (it == cfg.end()) {
        std::fprintf(stderr, "harness: configuration has no '%s'\n", key);
        std::exit(3);
    }
    return std::strtoull(it->second.c_str(), nullptr, 10);
}

const std::string& text(const Config& cfg, const char* key) {
    auto it = cfg.find(key);
    if (it == cfg.end()) {
        std::fprintf(stderr, "harness: configuration has no '%s'\n", key);
        std::exit(3);
    }
    return it->second;
}

// splitmix64: the documented generator of the gaps and stalls (seeded per run).
struct Random {
    uint64_t state;
    uint32_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
    }
    // true with probability threshold / 2^32
    bool below(uint64_t threshold) { return next() < threshold; }
};

std::vector<uint32_t> read_words(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    const auto bytes = static_cast<std::size_t>(in.tellg());
    std::vector<uint32_t> words(bytes / 4);
    in.seekg(0);
    in.read(reinterpret_cast<char*>(words.data()), static_cast<std::streamsize>(bytes));
    return words;
}

// One clock: the falling half (inputs applied, logic settled) and the rising edge.
class Clock {
  public:
    Clock(Vtop* top, const Config& cfg) : top_(top) {
#ifdef INQ_HW_TRACE
        Verilated::traceEverOn(true);
        trace_ = std::make_unique<VerilatedFstC>();
        top_->trace(trace_.get(), 99);
        trace_->open(text(cfg, "trace").c_str());
#else
        (void)cfg;
#endif
    }
    ~Clock() {
#ifdef INQ_HW_TRACE
        trace_->close();
#endif
    }
    void settle_low() {
        top_->clk = 0;
        top_->eval();
        dump();
    }
    void rise() {
        top_->clk = 1;
        top_->eval();
        dump();
    }
    uint64_t time() const { return time_; }

  private:
    void dump() {
#ifdef INQ_HW_TRACE
        trace_->dump(time_);
#endif
        time_ += 5;  // ns: a 10 ns clock, as the cocotb testbenches use
    }
    Vtop* top_;
    uint64_t time_ = 0;
#ifdef INQ_HW_TRACE
    std::unique_ptr<VerilatedFstC> trace_;
#endif
};

class WallClock {
  public:
    explicit WallClock(double limit_s) : limit_s_(limit_s), start_(now()) {}
    bool over() const { return limit_s_ > 0 && seconds() > limit_s_; }
    double seconds() const { return std::chrono::duration<double>(now() - start_).count(); }
    // CPU seconds of this (single-threaded) process: the run's cost on one core, whatever
    // else the machine is doing
    double cpu_seconds() const {
        return static_cast<double>(std::clock() - cpu_start_) / CLOCKS_PER_SEC;
    }

  private:
    static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
    double limit_s_;
    std::chrono::steady_clock::time_point start_;
    std::clock_t cpu_start_ = std::clock();
};

void progress(uint64_t done, uint64_t total, uint64_t& next_report, const WallClock& wall) {
    if (done < next_report && done != total) return;
    std::fprintf(stderr, "fast: samples done %llu/%llu (%.2f s)\n",
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                 wall.seconds());
    std::fflush(stderr);
    next_report = done + (total + 9) / 10;
}

#ifdef INQ_HW_STREAM
// The stream top runs inside the wrapper that engine.py writes (inq_hw_stream_harness,
// the model's only input is clk): at every rising edge the wrapper calls inq_hw_cycle with
// the handshake and result the top settled to in the cycle that edge ends, and registers
// the inputs this returns for the next cycle. The top's inputs thus change only at the
// clock edge, so Verilator computes its logic once per cycle (as top-level inputs, the
// input-dependent logic would be re-run by every eval(), the falling edge's included),
// while each cycle sees the same inputs and is sampled as in sim/tb_dataflow.py.
#include "Vtop__Dpi.h"

struct Stream {
    uint64_t in_words, out_words, samples, timed, max_cycles, idle, stall, total_beats;
    const uint32_t* beats;
    std::FILE* out;
    Random rng;
    std::vector<uint32_t> record;
    const uint32_t* payload = nullptr;  // the beat on i__payload (held until taken)
    uint64_t edges = 0, sent = 0, received = 0, cycle = 0, next_report = 0;
    int64_t first_in = -1;
    bool offering = false, ready = false, done = false;
    const WallClock* wall;
};
Stream* stream = nullptr;

constexpr uint64_t RESET_EDGES = 3;  // rst high at the first three rising edges

}  // namespace

// The edge ending `stream->cycle`: record its transfers, then choose the next cycle's inputs.
extern "C" void inq_hw_cycle(svBit i_fire, svBit o_fire, const svBitVecVal* o_payload,
                             svBit* rst, svBit* i_valid, svBitVecVal* i_payload,
                             svBit* o_ready) {
    Stream& s = *stream;
    ++s.edges;
    *rst = s.edges < RESET_EDGES;
    if (s.edges > RESET_EDGES) {
        if (i_fire) {
            if (s.first_in < 0) s.first_in = static_cast<int64_t>(s.cycle);
            ++s.sent;
            s.offering = false;
        }
        if (o_fire) {
            s.record[0] = static_cast<uint32_t>(s.cycle);
            s.record[1] = static_cast<uint32_t>(s.cycle >> 32);
            std::memcpy(&s.record[2], o_payload, 4 * s.out_words);
            std::fwrite(s.record.data(), 4, s.record.size(), s.out);
            ++s.received;
            progress(s.received, s.samples, s.next_report, *s.wall);
        }
        ++s.cycle;
    }
    if (s.edges >= RESET_EDGES) {
        if (s.received >= s.samples || s.cycle >= s.max_cycles) s.done = true;
        const bool calm = s.received < s.timed;
        if (!s.offering && s.sent < s.total_beats) {
            s.offering = calm || !s.rng.below(s.idle);
            if (s.offering) s.payload = &s.beats[s.sent * s.in_words];
        }
        s.ready = calm || !s.rng.below(s.stall);
    }
    *i_valid = s.offering;
    *o_ready = s.ready;
    if (s.payload != nullptr) std::memcpy(i_payload, s.payload, 4 * s.in_words);
}

namespace {

int run(Vtop* top, const Config& cfg) {
    const std::vector<uint32_t> beats = read_words(text(cfg, "input"));
    Stream s{};
    s.in_words = number(cfg, "in_words");
    s.out_words = number(cfg, "out_words");
    s.samples = number(cfg, "samples");
    s.timed = number(cfg, "timing_images");
    s.max_cycles = number(cfg, "max_cycles");
    s.idle = number(cfg, "idle_threshold");
    s.stall = number(cfg, "stall_threshold");
    s.total_beats = beats.size() / s.in_words;
    s.beats = beats.data();
    s.rng = Random{number(cfg, "seed")};
    s.record.resize(2 + s.out_words);
    s.out = std::fopen(text(cfg, "output").c_str(), "wb");
    if (s.out == nullptr) return 4;
    Clock clock(top, cfg);
    WallClock wall(static_cast<double>(number(cfg, "wall_ms")) / 1000.0);
    s.wall = &wall;
    stream = &s;
    bool wall_out = false;
    for (uint64_t k = 0; !s.done; ++k) {
        if ((k & 0xFFF) == 0 && wall.over()) {
            wall_out = true;
            break;
        }
        clock.settle_low();  // nothing changes but clk: no logic runs
        clock.rise();        // the edge: inq_hw_cycle, the registers, the logic once
    }
    std::fclose(s.out);
    std::ofstream result(text(cfg, "result"));
    result << "cycles " << s.cycle << "\nreceived " << s.received << "\nsent_beats " << s.sent
           << "\nfirst_in " << s.first_in << "\nwall_timeout " << wall_out << "\nrun_seconds "
           << wall.seconds() << "\ncpu_seconds " << wall.cpu_seconds() << "\n";
    return 0;
}
#endif

#ifdef INQ_HW_PE_ARRAY
void reset(Vtop* top, Clock& clock) {
    top->rst = 1;
    for (int k = 0; k < 3; ++k) {
        clock.settle_low();
        clock.rise();
    }
    top->rst = 0;
}

// Per image: write it one word per cycle, pulse i_start, run until o_done rises (or the
// cycle limit), read the outputs back (one edge of read latency), as sim/tb_pe_array.py.
int run(Vtop* top, const Config& cfg) {
    const uint64_t images = number(cfg, "images"), in_size = number(cfg, "input_size");
    const uint64_t in_base = number(cfg, "input_base"), out_base = number(cfg, "output_base");
    const uint64_t out_size = number(cfg, "output_size"), max_cycles = number(cfg, "max_cycles");
    const std::vector<uint32_t> words = read_words(text(cfg, "input"));
    std::FILE* out = std::fopen(text(cfg, "output").c_str(), "wb");
    if (out == nullptr) return 4;
    Clock clock(top, cfg);
    WallClock wall(static_cast<double>(number(cfg, "wall_ms")) / 1000.0);
    top->i_start = 0;
    top->i_wr_en = 0;
    top->i_rd_addr = 0;
    reset(top, clock);

    uint64_t done_images = 0, total_cycles = 0, next_report = 0;
    bool timeout = false, wall_out = false;
    std::vector<uint32_t> record(2 + out_size);
    for (uint64_t n = 0; n < images && !timeout && !wall_out; ++n) {
        for (uint64_t i = 0; i < in_size; ++i) {
            clock.settle_low();
            top->i_wr_en = 1;
            top->i_wr_addr = static_cast<uint32_t>(in_base + i);
            top->i_wr_data = words[n * in_size + i];
            clock.rise();
        }
        clock.settle_low();
        top->i_wr_en = 0;
        top->i_start = 1;
        top->eval();
        bool done_before = top->o_done;
        clock.rise();  // the edge that samples i_start
        uint64_t counted = 0;
        while (true) {
            clock.settle_low();
            top->i_start = 0;
            top->eval();
            done_before = top->o_done;
            clock.rise();
            ++counted;
            if (top->o_done && !done_before) break;
            if (counted >= max_cycles) {
                timeout = true;
                break;
            }
            if ((counted & 0xFFF) == 0 && wall.over()) {
                wall_out = true;
                break;
            }
        }
        if (timeout || wall_out) break;
        total_cycles += counted;
        record[0] = static_cast<uint32_t>(top->o_cycles);
        record[1] = static_cast<uint32_t>(counted);
        for (uint64_t i = 0; i <= out_size; ++i) {
            clock.settle_low();
            if (i > 0) record[1 + i] = static_cast<uint32_t>(top->o_rd_data);
            if (i < out_size) top->i_rd_addr = static_cast<uint32_t>(out_base + i);
            top->eval();
            clock.rise();
        }
        std::fwrite(record.data(), 4, record.size(), out);
        ++done_images;
        progress(done_images, images, next_report, wall);
    }
    std::fclose(out);
    std::ofstream result(text(cfg, "result"));
    result << "completed " << done_images << "\ntimeout " << timeout << "\nwall_timeout "
           << wall_out << "\narray_cycles " << total_cycles << "\nrun_seconds "
           << wall.seconds() << "\ncpu_seconds " << wall.cpu_seconds() << "\n";
    return 0;
}
#endif

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
        return 2;
    }
    const Config cfg = read_config(argv[1]);
    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vtop>(context.get());
    const int status = run(top.get(), cfg);
    top->final();
    return status;
}
