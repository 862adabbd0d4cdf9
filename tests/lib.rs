//! Helpers for end-to-end tests: a real hub on `127.0.0.1:0` with a temporary data directory,
//! demo data generated inside the test, and clients that go through the public gRPC API only.

use arrow::array::AsArray;
use citybrain::hub::{self, HubOptions, Started};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::catalog_service_client::CatalogServiceClient;
use citybrain_proto::v1::sharing_service_client::SharingServiceClient;
use citybrain_types::Role;
use std::path::{Path, PathBuf};
use tonic::Request;
use tonic::transport::Channel;

/// Residents in the test hub's data: small, so debug builds stay quick.
pub const TEST_PERSONS: u64 = 2_000;

/// A running hub over a temporary data directory.
pub struct TestHub {
    /// Keeps the directory alive for the test.
    pub dir: tempfile::TempDir,
    /// The running server and its signing key.
    pub started: Started,
}

impl TestHub {
    /// A hub with demo data and the repository's catalog applied.
    pub async fn demo() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        hub::prepare_demo(dir.path(), TEST_PERSONS, None).expect("demo data");
        Self::start_in(dir).await
    }

    /// A hub over an already prepared directory.
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        let opts = HubOptions::new(dir.path());
        Self::start_with(dir, &opts).await
    }

    /// A hub with explicit options (the options' data directory must be `dir`).
    pub async fn start_with(dir: tempfile::TempDir, opts: &HubOptions) -> Self {
        let started = hub::start(opts).await.expect("hub starts");
        Self { dir, started }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the datasets are.
    pub fn tables_dir(&self) -> PathBuf {
        self.dir.path().join(hub::TABLES_DIR)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.started.server.local_addr())
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid url")
            .connect()
            .await
            .expect("connects")
    }

    /// A token for a department and role, valid for ten minutes.
    pub fn token(&self, dept: &str, role: Role) -> String {
        self.started
            .issuer
            .mint(dept, role, &format!("{dept}-tester"), 600)
            .expect("mint")
    }

    /// A catalog client.
    pub async fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel().await)
    }

    /// `consumer` applies and the steward of `steward_dept` decides (`decide`'s application id
    /// is filled in): a grant with the steward's terms, in two calls through the public API.
    pub async fn apply_and_decide(
        &self,
        consumer: &str,
        apply: pb::ApplyRequest,
        steward_dept: &str,
        decide: pb::DecideRequest,
    ) {
        let mut sharing = SharingServiceClient::new(self.channel().await);
        let app = sharing
            .apply(authed(consumer, apply))
            .await
            .expect("applies")
            .into_inner()
            .application
            .expect("an application");
        sharing
            .decide(authed(
                &self.token(steward_dept, Role::Steward),
                pb::DecideRequest {
                    application_id: app.id,
                    ..decide
                },
            ))
            .await
            .expect("decides");
    }

    /// Stops the server.
    pub async fn stop(self) -> tempfile::TempDir {
        self.started
            .server
            .shutdown()
            .await
            .expect("clean shutdown");
        self.dir
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    req
}

/// Every row of a dataset directory, read straight from its Parquet files in name order: the
/// reference the tests compare the hub's answers with.
pub fn read_all(dir: &Path) -> Vec<arrow::array::RecordBatch> {
    citybrain_datagen::read_dataset(dir).expect("dataset files")
}

/// One resident as the generated files hold it.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Resident {
    pub id: String,
    pub name: String,
    pub birth: String,
    pub town: String,
    pub phone: String,
    pub gender: String,
    pub ethnicity: String,
}

/// Every resident, read straight from the residents' Parquet files (birth dates as YYYY-MM-DD).
pub fn residents(hub: &TestHub) -> Vec<Resident> {
    let mut out = Vec::new();
    for b in read_all(&hub.tables_dir().join("population/residents")) {
        let s = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
        let births = b
            .column_by_name("birth_date")
            .unwrap()
            .as_primitive::<arrow::datatypes::Date32Type>()
            .clone();
        let (ids, names, towns, phones, genders, eth) = (
            s("id_number"),
            s("name"),
            s("town"),
            s("phone"),
            s("gender"),
            s("ethnicity"),
        );
        for i in 0..b.num_rows() {
            out.push(Resident {
                id: ids.value(i).into(),
                name: names.value(i).into(),
                birth: citybrain_types::Date::from_days(births.value(i)).to_string(),
                town: towns.value(i).into(),
                phone: phones.value(i).into(),
                gender: genders.value(i).into(),
                ethnicity: eth.value(i).into(),
            });
        }
    }
    out
}
