#include "common/settings.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#ifndef TAMAYA_RUNTIMES_DIR
#define TAMAYA_RUNTIMES_DIR "runtimes"
#endif

namespace tamaya {

namespace {

using Setter = std::function<Status(Settings&, const std::string&)>;
using Getter = std::function<std::string(const Settings&)>;
struct Field {
  Setter set;
  Getter get;
};

template <typename T>
Field int_field(T Settings::*member) {
  return {[member](Settings& s, const std::string& v) -> Status {
            T out{};
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
            if (ec != std::errc() || p != v.data() + v.size() || out < 0) {
              return Status::Invalid("expected a non-negative integer, got '" + v + "'");
            }
            s.*member = out;
            return Status::Ok();
          },
          [member](const Settings& s) { return std::to_string(s.*member); }};
}

Field double_field(double Settings::*member) {
  return {[member](Settings& s, const std::string& v) -> Status {
            double out = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
            if (ec != std::errc() || p != v.data() + v.size() || !(out >= 0)) {
              return Status::Invalid("expected a non-negative number, got '" + v + "'");
            }
            s.*member = out;
            return Status::Ok();
          },
          [member](const Settings& s) {
            std::ostringstream o;
            o << s.*member;
            return o.str();
          }};
}

Field str_field(std::string Settings::*member) {
  return {[member](Settings& s, const std::string& v) {
            s.*member = v;
            return Status::Ok();
          },
          [member](const Settings& s) { return s.*member; }};
}

const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> kFields = {
      {"data_dir", str_field(&Settings::data_dir)},
      {"admin_host", str_field(&Settings::admin_host)},
      {"admin_port", int_field(&Settings::admin_port)},
      {"log_level", str_field(&Settings::log_level)},
      {"region", str_field(&Settings::region)},
      {"admin_max_body_bytes", int_field(&Settings::admin_max_body_bytes)},
      {"max_header_bytes", int_field(&Settings::max_header_bytes)},
      {"http_header_timeout_ms", int_field(&Settings::http_header_timeout_ms)},
      {"http_idle_timeout_ms", int_field(&Settings::http_idle_timeout_ms)},
      {"http_refused_reads_per_s", int_field(&Settings::http_refused_reads_per_s)},
      {"invoke_max_payload_bytes", int_field(&Settings::invoke_max_payload_bytes)},
      {"runtime_max_response_bytes", int_field(&Settings::runtime_max_response_bytes)},
      {"artifact_max_zip_bytes", int_field(&Settings::artifact_max_zip_bytes)},
      {"artifact_max_unpacked_bytes", int_field(&Settings::artifact_max_unpacked_bytes)},
      {"artifact_max_files", int_field(&Settings::artifact_max_files)},
      {"default_memory_mb", int_field(&Settings::default_memory_mb)},
      {"default_timeout_s", int_field(&Settings::default_timeout_s)},
      {"default_max_concurrency", int_field(&Settings::default_max_concurrency)},
      {"max_timeout_s", int_field(&Settings::max_timeout_s)},
      {"max_memory_mb", int_field(&Settings::max_memory_mb)},
      {"instance_idle_timeout_ms", int_field(&Settings::instance_idle_timeout_ms)},
      {"queue_max_per_function", int_field(&Settings::queue_max_per_function)},
      {"queue_timeout_ms", int_field(&Settings::queue_timeout_ms)},
      {"instance_start_timeout_ms", int_field(&Settings::instance_start_timeout_ms)},
      {"drain_timeout_ms", int_field(&Settings::drain_timeout_ms)},
      {"concurrency_limit", int_field(&Settings::concurrency_limit)},
      {"concurrency_unreserved_min", int_field(&Settings::concurrency_unreserved_min)},
      {"provision_retry_max_ms", int_field(&Settings::provision_retry_max_ms)},
      {"launch_threads", int_field(&Settings::launch_threads)},
      {"event_loop_idle_poll_us", int_field(&Settings::event_loop_idle_poll_us)},
      {"event_loop_busy_yield_us", int_field(&Settings::event_loop_busy_yield_us)},
      {"scale_hold_busy_per_core", int_field(&Settings::scale_hold_busy_per_core)},
      {"scale_hold_cpu_pressure_percent", int_field(&Settings::scale_hold_cpu_pressure_percent)},
      {"scale_hold_function_cpu_percent", int_field(&Settings::scale_hold_function_cpu_percent)},
      {"scale_hold_max_wait_ms", int_field(&Settings::scale_hold_max_wait_ms)},
      {"scale_sample_ms", int_field(&Settings::scale_sample_ms)},
      {"events_delivery_concurrency", int_field(&Settings::events_delivery_concurrency)},
      {"events_retry_base_ms", int_field(&Settings::events_retry_base_ms)},
      {"events_throttle_base_ms", int_field(&Settings::events_throttle_base_ms)},
      {"events_throttle_max_ms", int_field(&Settings::events_throttle_max_ms)},
      {"events_min_event_age_s", int_field(&Settings::events_min_event_age_s)},
      {"events_max_queue_depth", int_field(&Settings::events_max_queue_depth)},
      {"events_max_queued_bytes", int_field(&Settings::events_max_queued_bytes)},
      {"log_max_bytes_per_invocation", int_field(&Settings::log_max_bytes_per_invocation)},
      {"schedules_max", int_field(&Settings::schedules_max)},
      {"schedule_input_max_bytes", int_field(&Settings::schedule_input_max_bytes)},
      {"schedule_history_max", int_field(&Settings::schedule_history_max)},
      {"schedule_test_clock_ms", int_field(&Settings::schedule_test_clock_ms)},
      {"log_max_events_per_function", int_field(&Settings::log_max_events_per_function)},
      {"logs_follow_max_streams", int_field(&Settings::logs_follow_max_streams)},
      {"logs_follow_max_buffer_bytes", int_field(&Settings::logs_follow_max_buffer_bytes)},
      {"invocation_max_age_s", int_field(&Settings::invocation_max_age_s)},
      {"invocation_max_rows", int_field(&Settings::invocation_max_rows)},
      {"price_request_usd_per_million", double_field(&Settings::price_request_usd_per_million)},
      {"price_gb_second_usd", double_field(&Settings::price_gb_second_usd)},
      {"rented_instance_hourly_usd", double_field(&Settings::rented_instance_hourly_usd)},
      {"rented_instance_memory_mb", int_field(&Settings::rented_instance_memory_mb)},
      {"lambda_api_verify_sigv4", int_field(&Settings::lambda_api_verify_sigv4)},
      {"lambda_api_keys", str_field(&Settings::lambda_api_keys)},
      {"gateway_host", str_field(&Settings::gateway_host)},
      {"gateway_port", int_field(&Settings::gateway_port)},
      {"gateway_integration_timeout_ms", int_field(&Settings::gateway_integration_timeout_ms)},
      {"gateway_max_body_bytes", int_field(&Settings::gateway_max_body_bytes)},
      {"gateway_async_max_body_bytes", int_field(&Settings::gateway_async_max_body_bytes)},
      {"gateway_max_header_bytes", int_field(&Settings::gateway_max_header_bytes)},
      {"gateway_max_header_count", int_field(&Settings::gateway_max_header_count)},
      {"gateway_max_request_line_bytes", int_field(&Settings::gateway_max_request_line_bytes)},
      {"gateway_max_connections", int_field(&Settings::gateway_max_connections)},
      {"gateway_header_timeout_ms", int_field(&Settings::gateway_header_timeout_ms)},
      {"gateway_body_timeout_ms", int_field(&Settings::gateway_body_timeout_ms)},
      {"gateway_idle_timeout_ms", int_field(&Settings::gateway_idle_timeout_ms)},
      {"gateway_refused_reads_per_s", int_field(&Settings::gateway_refused_reads_per_s)},
      {"gateway_access_log", str_field(&Settings::gateway_access_log)},
      {"gateway_access_log_flush_ms", int_field(&Settings::gateway_access_log_flush_ms)},
      {"gateway_access_log_buffer_bytes", int_field(&Settings::gateway_access_log_buffer_bytes)},
      {"gateway_quota_flush_ms", int_field(&Settings::gateway_quota_flush_ms)},
      {"python_path", str_field(&Settings::python_path)},
      {"python_zygote", str_field(&Settings::python_zygote)},
      {"python_zygote_start_timeout_ms", int_field(&Settings::python_zygote_start_timeout_ms)},
      {"python_zygote_prefork", int_field(&Settings::python_zygote_prefork)},
      {"node_pool_size", int_field(&Settings::node_pool_size)},
      {"node_pool_start_timeout_ms", int_field(&Settings::node_pool_start_timeout_ms)},
      {"node_path", str_field(&Settings::node_path)},
      {"runtimes_dir", str_field(&Settings::runtimes_dir)},
      {"sandbox_isolation", str_field(&Settings::sandbox_isolation)},
      {"sandbox_uid_base", int_field(&Settings::sandbox_uid_base)},
      {"sandbox_uid_count", int_field(&Settings::sandbox_uid_count)},
      {"sandbox_pids_max", int_field(&Settings::sandbox_pids_max)},
      {"sandbox_cgroup_favor_dynmods", str_field(&Settings::sandbox_cgroup_favor_dynmods)},
      {"sandbox_cgroups_ahead", int_field(&Settings::sandbox_cgroups_ahead)},
      {"sandbox_ready_ahead", int_field(&Settings::sandbox_ready_ahead)},
      {"instance_cpu_policy", str_field(&Settings::instance_cpu_policy)},
      {"sandbox_open_files", int_field(&Settings::sandbox_open_files)},
      {"default_tmp_mb", int_field(&Settings::default_tmp_mb)},
      {"max_tmp_mb", int_field(&Settings::max_tmp_mb)},
  };
  return kFields;
}

std::string env_name(const std::string& key) {
  std::string out = "TAMAYA_";
  for (char c : key) out += char(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Status Settings::set(const std::string& key, const std::string& value) {
  auto it = fields().find(key);
  if (it == fields().end()) return Status::Invalid("unknown setting '" + key + "'");
  return it->second.set(*this, value).with_context("setting " + key);
}

std::map<std::string, std::string> Settings::to_map() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, field] : fields()) out[name] = field.get(*this);
  return out;
}

Result<Settings> load_settings(const std::string& path, bool required) {
  Settings s;
  s.runtimes_dir = TAMAYA_RUNTIMES_DIR;
  if (!path.empty() && std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::stringstream buf;
    buf << in.rdbuf();
    auto doc = nlohmann::json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      return Status::Invalid("settings file " + path + " is not a JSON object");
    }
    for (const auto& [key, value] : doc.items()) {
      std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      TAMAYA_RETURN_IF_ERROR(s.set(key, text).with_context(path));
    }
  } else if (required) {
    return Status::NotFound("settings file " + path + " does not exist");
  }
  for (const auto& [name, field] : fields()) {
    if (const char* v = std::getenv(env_name(name).c_str())) {
      TAMAYA_RETURN_IF_ERROR(s.set(name, v).with_context(env_name(name)));
    }
  }
  return s;
}

}  // namespace tamaya
