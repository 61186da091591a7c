"""The built-in Flower app: LeNet5 trained with FedAvg, MindSpore-style client logs.

    client_app.py       The built-in ClientApp: each train message evaluates the received model, then trains
    client_data.py      One client's partition on disk (``client_<i>.npz``) and in memory as tensors
    convert_cache.py    Converted data sets kept between runs: a data set converted once is linked into later runs,
                        not converted again
    device.py           Where a task computes (--device: cpu, or cuda where torch sees a GPU), its GPU memory bound
                        and peak; ``python -m simulator.device`` prints a host's GPUs
    datasets.py         Whole data sets as uint8 images (N, C, 32, 32) and int64 labels
    exchange_clock.py   How long Flower 1.41 takes to move one task's messages over an emulated link: the emulated
                        clock's transfer
    femnist.py          FEMNIST by writer: LEAF's JSON files or MindSpore's per-writer .bin folders
    fleet_rounds.py     A round's stragglers, over-commit and availability: who is sampled, whose reply is taken, the
                        run's clock
    flower_app.py       Write the built-in app as a Flower app folder that ``flwr run`` can build a FAB from
    model.py            The model: LeNet5 as in Flower's IoT tutorial (with BatchNorm), or a user's torch module
    npz_split.py        Data a user has already split: one ``client_<i>.npz`` per client, used as it is
    deadline_grid.py    a Grid that ends a round's wait at its deadline, at enough replies or when only lost
                        nodes are left, polling for replies every 0.1 s instead of every 3 s
    round_outcome.py    Why a round was not aggregated (or a model not served), and what that makes of the run
    sampling.py         Which clients take part in a round: K partition ids drawn from the seed, then their node ids
    server_app.py       The built-in ServerApp: FedAvg rounds, a final evaluation, or serving a saved model
    simulation_nodes.py Flower's simulation runtime seen from the ServerApp: which client each virtual node is,
                        messages by node
    strategy.py         Flower's strategies where a round is one train message, logged through contract.loglines
    training.py         Local training, evaluation and prediction on tensors already in memory
    wire.py             The model on the wire: a whole state_dict as one flat float32 array

Imports contract/ (settings, log lines, bells) and partitions/; never launcher/ (a ServerApp under the simulation
runtime cannot import it).
"""
