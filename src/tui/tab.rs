//! The explorer's tabs: one table of their facts (title on screen, name in session files).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    Lens,
    Layers,
    Heads,
    Attention,
    Compare,
    Graph,
}

/// Every tab in screen order, with its title and its name in session files.
const TABS: [(Tab, &str, &str); 6] = [
    (Tab::Lens, "Lens", "lens"),
    (Tab::Layers, "Layers", "layers"),
    (Tab::Heads, "Heads", "heads"),
    (Tab::Attention, "Attention", "attention"),
    (Tab::Compare, "Compare", "compare"),
    (Tab::Graph, "Graph", "graph"),
];

impl Tab {
    pub const ALL: [Tab; 6] = [
        TABS[0].0, TABS[1].0, TABS[2].0, TABS[3].0, TABS[4].0, TABS[5].0,
    ];

    pub fn index(self) -> usize {
        TABS.iter().position(|t| t.0 == self).expect("listed")
    }

    pub fn title(self) -> &'static str {
        TABS[self.index()].1
    }

    /// The name in session files.
    pub fn name(self) -> &'static str {
        TABS[self.index()].2
    }

    /// The tab a session file names; Lens for names it does not know.
    pub fn of_name(name: &str) -> Tab {
        TABS.iter().find(|t| t.2 == name).map_or(Tab::Lens, |t| t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_open_the_lens() {
        for tab in Tab::ALL {
            assert_eq!(Tab::of_name(tab.name()), tab);
            assert_eq!(Tab::ALL[tab.index()], tab);
        }
        assert_eq!(Tab::of_name("graph"), Tab::Graph);
        assert_eq!(Tab::of_name("frontier"), Tab::Lens);
        assert_eq!(Tab::Attention.title(), "Attention");
    }
}
