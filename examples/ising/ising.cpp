#include "ising.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

namespace ising {
namespace {

// std::mt19937_64's output sequence is fixed by the C++ standard, unlike the standard
// distributions: raw draws are compared with integer thresholds, so results are the same
// with every compiler and library.
using Engine = std::mt19937_64;
// For an unbiased-enough random site: (draw * sites) >> 64 (GCC and Clang both have it).
__extension__ using Wide = unsigned __int128;

// Blocks for the error bars: consecutive measurements are correlated, block means much less.
constexpr int kBlocks = 20;

// A draw x from Engine is accepted with probability p when x < threshold(p).
std::uint64_t threshold(double probability) {
  if (!(probability > 0)) return 0;
  if (probability >= 1) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(std::ldexp(probability, 64));
}

class Lattice {
 public:
  explicit Lattice(int size)
      : sites_(static_cast<std::size_t>(size) * static_cast<std::size_t>(size)), spins_(sites_, 1) {
    // Neighbour tables make periodic boundaries free in the inner loops.
    neighbours_.resize(4 * sites_);
    for (int row = 0; row < size; ++row) {
      for (int column = 0; column < size; ++column) {
        const std::size_t site = index(size, row, column);
        neighbours_[4 * site + 0] = index(size, row, (column + 1) % size);
        neighbours_[4 * site + 1] = index(size, (row + 1) % size, column);
        neighbours_[4 * site + 2] = index(size, row, (column + size - 1) % size);
        neighbours_[4 * site + 3] = index(size, (row + size - 1) % size, column);
      }
    }
  }

  std::size_t sites() const noexcept { return sites_; }
  std::int8_t& spin(std::size_t site) noexcept { return spins_[site]; }
  const std::uint32_t* neighbours(std::size_t site) const noexcept { return &neighbours_[4 * site]; }

  // Sum of the spins, and the energy -sum over bonds s_i s_j (each bond once: right and down).
  std::int64_t magnetization() const noexcept {
    std::int64_t sum = 0;
    for (std::int8_t s : spins_) sum += s;
    return sum;
  }
  std::int64_t energy() const noexcept {
    std::int64_t sum = 0;
    for (std::size_t site = 0; site < sites_; ++site) {
      sum -= spins_[site] * (spins_[neighbours_[4 * site]] + spins_[neighbours_[4 * site + 1]]);
    }
    return sum;
  }

 private:
  static std::uint32_t index(int size, int row, int column) { return static_cast<std::uint32_t>(row * size + column); }

  std::size_t sites_;
  std::vector<std::int8_t> spins_;
  std::vector<std::uint32_t> neighbours_;
};

class Updater {
 public:
  Updater(Lattice& lattice, const IsingParams& params)
      : lattice_(lattice), algorithm_(params.algorithm), engine_(params.seed) {
    // Flipping a spin whose neighbours sum to h costs dE = 2 s h, with s h in {2, 4} when
    // it costs anything: two Boltzmann factors cover every uphill move.
    accept_[1] = threshold(std::exp(-4.0 / params.temperature));
    accept_[2] = threshold(std::exp(-8.0 / params.temperature));
    add_to_cluster_ = threshold(-std::expm1(-2.0 / params.temperature));
    stack_.reserve(lattice.sites());
  }

  void sweep() {
    if (algorithm_ == Algorithm::metropolis) {
      metropolis_sweep();
    } else if (clusters_per_sweep_ == 0) {
      // Calibrating: grow clusters until about L*L spins flipped, and remember how many it took.
      for (std::size_t flipped = 0; flipped < lattice_.sites();) {
        flipped += wolff_cluster();
        ++calibration_clusters_;
      }
      ++calibration_sweeps_;
    } else {
      for (std::size_t c = 0; c < clusters_per_sweep_; ++c) wolff_cluster();
    }
  }

  // Ends equilibration. From now on a Wolff sweep is a fixed number of clusters: stopping
  // once enough spins flipped would measure at times that depend on the cluster sizes, which
  // favours ordered states and biases the averages (by several error bars at T = 3, L = 32).
  void start_measuring() {
    if (algorithm_ != Algorithm::wolff) return;
    if (calibration_sweeps_ == 0) sweep();
    clusters_per_sweep_ =
        std::max<std::size_t>(1, (calibration_clusters_ + calibration_sweeps_ / 2) / calibration_sweeps_);
  }

 private:
  void metropolis_sweep() {
    for (std::size_t site = 0; site < lattice_.sites(); ++site) {
      const std::uint32_t* next = lattice_.neighbours(site);
      const int s = lattice_.spin(site);
      const int cost =
          s * (lattice_.spin(next[0]) + lattice_.spin(next[1]) + lattice_.spin(next[2]) + lattice_.spin(next[3]));
      if (cost <= 0 || engine_() < accept_[static_cast<std::size_t>(cost / 2)]) {
        lattice_.spin(site) = static_cast<std::int8_t>(-s);
      }
    }
  }

  // Grows one cluster from a random site, adding aligned neighbours with probability
  // 1 - exp(-2/T), and flips it. Spins are flipped as they join, which also marks them.
  std::size_t wolff_cluster() {
    const auto start = static_cast<std::uint32_t>((static_cast<Wide>(engine_()) * lattice_.sites()) >> 64);
    const std::int8_t aligned = lattice_.spin(start);
    lattice_.spin(start) = static_cast<std::int8_t>(-aligned);
    stack_.push_back(start);
    std::size_t size = 1;
    while (!stack_.empty()) {
      const std::uint32_t site = stack_.back();
      stack_.pop_back();
      const std::uint32_t* next = lattice_.neighbours(site);
      for (int k = 0; k < 4; ++k) {
        if (lattice_.spin(next[k]) == aligned && engine_() < add_to_cluster_) {
          lattice_.spin(next[k]) = static_cast<std::int8_t>(-aligned);
          stack_.push_back(next[k]);
          ++size;
        }
      }
    }
    return size;
  }

  Lattice& lattice_;
  Algorithm algorithm_;
  Engine engine_;
  std::array<std::uint64_t, 3> accept_{};
  std::uint64_t add_to_cluster_ = 0;
  std::vector<std::uint32_t> stack_;
  std::size_t clusters_per_sweep_ = 0;  // 0 while equilibrating
  std::size_t calibration_clusters_ = 0;
  std::size_t calibration_sweeps_ = 0;
};

// Mean and standard error of the mean from block means.
struct BlockAverage {
  std::array<double, kBlocks> sums{};
  std::array<int, kBlocks> counts{};

  void add(int block, double value) {
    sums[static_cast<std::size_t>(block)] += value;
    ++counts[static_cast<std::size_t>(block)];
  }
  double error() const {
    std::vector<double> means;
    for (int b = 0; b < kBlocks; ++b) {
      if (counts[static_cast<std::size_t>(b)] > 0) {
        means.push_back(sums[static_cast<std::size_t>(b)] / counts[static_cast<std::size_t>(b)]);
      }
    }
    if (means.size() < 2) return 0;
    double mean = 0;
    for (double m : means) mean += m;
    mean /= static_cast<double>(means.size());
    double squares = 0;
    for (double m : means) squares += (m - mean) * (m - mean);
    return std::sqrt(squares / (static_cast<double>(means.size()) * static_cast<double>(means.size() - 1)));
  }
};

}  // namespace

std::string_view algorithm_name(Algorithm algorithm) {
  return algorithm == Algorithm::metropolis ? "metropolis" : "wolff";
}

Algorithm parse_algorithm(std::string_view name) {
  if (name == "metropolis") return Algorithm::metropolis;
  if (name == "wolff") return Algorithm::wolff;
  throw std::invalid_argument("unknown algorithm '" + std::string(name) + "': use metropolis or wolff");
}

IsingResult simulate(const IsingParams& params) {
  if (params.size < 2 || params.size > 1 << 15) {
    throw std::invalid_argument("lattice size " + std::to_string(params.size) + " is out of range [2, 32768]");
  }
  if (!(params.temperature > 0) || !std::isfinite(params.temperature)) {
    throw std::invalid_argument("temperature must be positive and finite, got " + std::to_string(params.temperature));
  }
  if (params.equilibration_sweeps < 0 || params.measurement_sweeps < 1) {
    throw std::invalid_argument("need equilibration_sweeps >= 0 and measurement_sweeps >= 1");
  }

  // Start ordered: below T_c that is the equilibrium state already, above it melts quickly.
  Lattice lattice(params.size);
  Updater updater(lattice, params);
  for (int sweep = 0; sweep < params.equilibration_sweeps; ++sweep) updater.sweep();
  updater.start_measuring();

  const auto n = static_cast<double>(lattice.sites());
  double sum_abs_m = 0, sum_m2 = 0, sum_m4 = 0, sum_e = 0, sum_e2 = 0;
  BlockAverage abs_m_blocks, e_blocks;
  for (int sweep = 0; sweep < params.measurement_sweeps; ++sweep) {
    updater.sweep();
    const double m = static_cast<double>(std::llabs(lattice.magnetization())) / n;
    const double e = static_cast<double>(lattice.energy()) / n;
    sum_abs_m += m;
    sum_m2 += m * m;
    sum_m4 += m * m * m * m;
    sum_e += e;
    sum_e2 += e * e;
    const int block = static_cast<int>(static_cast<std::int64_t>(sweep) * kBlocks / params.measurement_sweeps);
    abs_m_blocks.add(block, m);
    e_blocks.add(block, e);
  }

  const double count = params.measurement_sweeps;
  const double abs_m = sum_abs_m / count, m2 = sum_m2 / count, m4 = sum_m4 / count;
  const double e = sum_e / count, e2 = sum_e2 / count;
  const double t = params.temperature;
  IsingResult result;
  result.temperature = t;
  result.abs_magnetization = abs_m;
  result.abs_magnetization_error = abs_m_blocks.error();
  result.energy = e;
  result.energy_error = e_blocks.error();
  result.susceptibility = n * (m2 - abs_m * abs_m) / t;
  result.specific_heat = n * (e2 - e * e) / (t * t);
  result.binder_cumulant = m2 > 0 ? 1 - m4 / (3 * m2 * m2) : 0;
  return result;
}

std::uint64_t task_seed(std::uint64_t base_seed, std::size_t index) {
  // splitmix64's finalizer over the pair: a bijection, so distinct indices never collide.
  std::uint64_t z = base_seed + 0x9e3779b97f4a7c15ULL * (static_cast<std::uint64_t>(index) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double onsager_magnetization(double temperature) {
  if (temperature >= kCriticalTemperature) return 0;
  const double s = std::sinh(2 / temperature);
  return std::pow(1 - 1 / (s * s * s * s), 0.125);
}

double onsager_energy(double temperature) {
  const double b2 = 2 / temperature;  // 2 beta J
  const double k = 2 * std::sinh(b2) / (std::cosh(b2) * std::cosh(b2));
  // At T_c the elliptic integral diverges while its factor vanishes; the limit is -sqrt 2.
  if (k >= 1 - 1e-15) return -std::numbers::sqrt2;
  const double t = std::tanh(b2);
  return -(1 / t) * (1 + 2 / std::numbers::pi * (2 * t * t - 1) * std::comp_ellint_1(k));
}

}  // namespace ising
