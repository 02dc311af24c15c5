# A counting subscriber for scripts/bench relay, loaded into a pod of
# scripts/cluster next to tests/fixtures/phoenix_pubsub.ex:
#
#   scripts/cluster pubsub I 'Code.compile_file("bench/relay_sink.ex"); :ok'
#   scripts/cluster pubsub I 'BeamlinkBench.Sink.start("EWalletAPI.PubSub", "bench:relay")'
#
# It registers in the fixture's subscriber Registry for the topic, exactly as
# the fixture's recorders do, so messages reach it by the same path (the
# pubsub worker's forward_to_local -> local_dispatch -> Registry.dispatch).
# Unlike a recorder it keeps no message: at 50,000 messages/s a recorder's
# list of maps costs the pod more than the delivery itself. Per message it
# keeps the receive time (CLOCK_REALTIME, us) minus the payload's "t" and the
# payload's "i", so stats/0 can give latency percentiles and check that each
# i arrived once.
defmodule BeamlinkBench.Sink do
  @name :beamlink_bench_sink

  @doc "Starts the sink (replacing a previous one) subscribed to topic on pubsub NAME. :ok."
  def start(pubsub, topic) do
    stop()
    cfg = PhoenixPubSubFixture.config(PhoenixPubSubFixture.name_atom(pubsub))
    if cfg == nil, do: raise(ArgumentError, "no pubsub #{pubsub} on #{node()}")
    parent = self()

    pid =
      spawn(fn ->
        Process.register(self(), @name)
        {:ok, _} = Registry.register(cfg.registry, topic, nil)
        send(parent, {:sink_ready, self()})
        loop(fresh())
      end)

    receive do
      {:sink_ready, ^pid} -> :ok
    after
      5000 -> raise "the sink did not start"
    end
  end

  @doc "Stops the sink (it leaves the Registry with it). :ok."
  def stop do
    case Process.whereis(@name) do
      nil ->
        :ok

      pid ->
        ref = Process.monitor(pid)
        Process.exit(pid, :kill)

        receive do
          {:DOWN, ^ref, _, _, _} -> :ok
        end
    end
  end

  @doc "Forgets what the sink counted. :ok."
  def reset, do: call(:reset)

  @doc """
  %{"count", "first_us", "last_us", "distinct_i", "other",
  "lat_p50_us", "lat_p99_us", "lat_max_us"} (latencies over messages whose
  "t" > 0). Answered after every message already in the sink's mailbox.
  """
  def stats, do: call(:stats)

  @doc "Polls stats/0 until count >= n or timeout_ms; returns the last stats."
  def wait_count(n, timeout_ms) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms
    wait_loop(n, deadline)
  end

  defp wait_loop(n, deadline) do
    s = stats()

    if s["count"] >= n or System.monotonic_time(:millisecond) > deadline do
      s
    else
      Process.sleep(100)
      wait_loop(n, deadline)
    end
  end

  defp call(what) do
    pid = Process.whereis(@name) || raise "no sink on #{node()}: call start/2"
    ref = make_ref()
    send(pid, {what, self(), ref})

    receive do
      {^ref, reply} -> reply
    after
      120_000 -> raise "the sink did not answer in 120 s"
    end
  end

  defp fresh, do: %{count: 0, first: 0, last: 0, lat: [], is: [], other: 0}

  defp loop(s) do
    receive do
      %{__struct__: Phoenix.Socket.Broadcast, payload: payload} ->
        now = :os.system_time(:microsecond)

        s =
          case payload do
            %{"t" => t, "i" => i} when is_integer(t) and t > 0 ->
              %{s | lat: [now - t | s.lat], is: [i | s.is]}

            _ ->
              s
          end

        first = if s.count == 0, do: now, else: s.first
        loop(%{s | count: s.count + 1, first: first, last: now})

      {:stats, from, ref} ->
        send(from, {ref, summary(s)})
        loop(s)

      {:reset, from, ref} ->
        send(from, {ref, :ok})
        :erlang.garbage_collect()
        loop(fresh())

      _other ->
        loop(%{s | other: s.other + 1})
    end
  end

  defp summary(s) do
    lat = Enum.sort(s.lat)
    n = length(lat)
    pct = fn p -> if n == 0, do: 0, else: Enum.at(lat, trunc(p * (n - 1))) end

    %{
      "count" => s.count,
      "first_us" => s.first,
      "last_us" => s.last,
      "distinct_i" => length(:lists.usort(s.is)),
      "timed" => n,
      "other" => s.other,
      "lat_p50_us" => pct.(0.5),
      "lat_p99_us" => pct.(0.99),
      "lat_max_us" => if(n == 0, do: 0, else: List.last(lat))
    }
  end
end
