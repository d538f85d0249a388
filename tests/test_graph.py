import json

from toolrl.data.workflows import load_workflow_templates
from toolrl.env import graph as graph_module
from toolrl.env.graph import Edge, build_graph, values_at, wildcard, witnessed_template_edges


def test_paths():
    assert wildcard("hotels[0].property.id") == "hotels[*].property.id"
    assert values_at({"a": [{"b": 1}, {"b": 2}]}, "a[*].b") == [1, 2]
    assert values_at([{"x": {"y": 3}}], "[0].x.y") == [3]
    assert values_at({"a": []}, "a[0].b") == []


def test_hand_built_sample_mines_its_edge():
    from toolrl.data.traces import TraceSample, TraceStep

    location = TraceStep(0, "Search_Hotel_Destination", {"query": "Paris"}, (), (),
                         {"status": True, "message": "ok", "data": [{"dest_id": "-1456928", "name": "Paris"}]}, True)
    hotels = TraceStep(1, "Search_Hotels", {"dest_id": -1456928, "adults": 2, "arrival_date": "2024-12-01"}, (0,), (), "", True)
    graph = build_graph([TraceSample("s", "q", "w", (), (location, hotels), "x")])
    assert graph.edges() == [Edge("Search_Hotel_Destination", "[*].dest_id", "Search_Hotels", "dest_id")]
    assert graph.free_parameters["Search_Hotels"] == {"adults": 1, "arrival_date": 1}  # adults=2: too generic
    assert graph.free_parameters["Search_Hotel_Destination"] == {"query": 1}


def test_graph_covers_the_witnessed_template_edges(all_samples):
    templates = load_workflow_templates()
    graph = build_graph(all_samples, templates)
    witnessed = witnessed_template_edges(templates, all_samples)
    mined = set(graph.edges("traces"))
    covered = [w for w in witnessed if Edge(w[0], wildcard(w[1]), w[2], w[3]) in mined]
    assert len(witnessed) >= 63
    assert len(covered) >= 0.95 * len(witnessed)
    assert len(graph.edges("templates")) == 118  # 152 concrete template edges, 118 once wildcarded
    both = [e for e in graph.edges() if set(graph.support[e]) == {"traces", "templates"}]
    assert both and all(graph.support[e]["traces"] >= 1 for e in both)


def test_cli_writes_json_and_png(tmp_path, capsys):
    assert graph_module.main(["--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "dependency_graph.json").read_text())
    assert data["edges"] and {"traces", "templates"} >= set(data["edges"][0]["sources"])
    assert (tmp_path / "dependency_graph.png").stat().st_size > 10_000
    assert "witnessed by the traces" in capsys.readouterr().out
    reloaded = graph_module.DependencyGraph.from_json(data)
    assert len(reloaded.edges()) == len(data["edges"])
